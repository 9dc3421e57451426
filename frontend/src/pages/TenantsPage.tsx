// Tenants, for platform admins: list, create, and pick one to act on.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { ApiError, api, unwrap } from "../api/client";
import { queries, upsert } from "../api/queries";
import { useSession } from "../auth/session";
import { ErrorText, Field, Loading } from "../components/ui";
import { formatTime } from "../lib/format";
import { hasErrors, slugProblem } from "../lib/validate";

export function TenantsPage() {
  const { tenant, pickTenant } = useSession();
  const queryClient = useQueryClient();
  const tenants = useQuery(queries.tenants());
  const [form, setForm] = useState({ slug: "", name: "" });
  const [errors, setErrors] = useState<Record<string, string | null>>({});
  const create = useMutation({
    mutationFn: () => unwrap(api.POST("/api/tenants", { body: { slug: form.slug.trim(), name: form.name.trim() || null } })),
    onSuccess: (created) => {
      setForm({ slug: "", name: "" });
      const { queryKey } = queries.tenants();
      queryClient.setQueryData(queryKey, (list) => upsert(list, created, "end"));
      return queryClient.invalidateQueries({ queryKey });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = {
      slug: slugProblem(form.slug.trim(), "slug"),
      name: form.name.length > 200 ? "The name is longer than 200 characters." : null,
    };
    setErrors(found);
    if (!hasErrors(found)) create.mutate();
  };
  const slugError = create.error instanceof ApiError && create.error.param === "slug" ? create.error.message : null;
  return (
    <div className="page">
      <header className="page-head">
        <h1>Tenants</h1>
      </header>
      <ErrorText error={tenants.error} />
      {tenants.isPending ? (
        <Loading what="tenants" />
      ) : (
        <table>
          <thead>
            <tr>
              <th>Slug</th>
              <th>Name</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tenants.data?.map((t) => (
              <tr key={t.id} data-tenant={t.slug}>
                <td className="mono">{t.slug}</td>
                <td>{t.name}</td>
                <td>{formatTime(t.created_at)}</td>
                <td>
                  {tenant === t.slug ? (
                    <span className="ok">acting on it</span>
                  ) : (
                    <button type="button" onClick={() => pickTenant(t.slug)}>
                      Act on {t.slug}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="card inline-form" onSubmit={submit} noValidate aria-label="Create a tenant">
        <h2>New tenant</h2>
        <Field label="Slug" htmlFor="tenant-slug" error={errors["slug"] ?? slugError} hint="lowercase letters, digits, '-'">
          <input id="tenant-slug" value={form.slug} spellCheck={false} onChange={(e) => { setForm({ ...form, slug: e.target.value }); setErrors({}); }} />
        </Field>
        <Field label="Name" htmlFor="tenant-name" error={errors["name"]}>
          <input id="tenant-name" value={form.name} onChange={(e) => { setForm({ ...form, name: e.target.value }); setErrors({}); }} />
        </Field>
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? "Creating…" : "Create tenant"}
        </button>
        {!slugError && <ErrorText error={create.error} />}
      </form>
    </div>
  );
}
