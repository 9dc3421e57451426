// The frame around every signed-in page: navigation by role, the tenant picker of a platform
// admin, who is signed in, and sign-out.
import { useMutation, useQuery } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { NavLink, useNavigate } from "react-router";
import { queries } from "../api/queries";
import { isAdmin, useSession } from "../auth/session";
import { ErrorText } from "./ui";

function TenantPicker() {
  const { tenant, pickTenant } = useSession();
  const tenants = useQuery(queries.tenants());
  return (
    <label className="tenant-picker">
      <span className="muted small">Tenant</span>
      <select
        aria-label="Tenant"
        value={tenant ?? ""}
        onChange={(e) => pickTenant(e.target.value || null)}
        disabled={!tenants.data}
      >
        <option value="">— pick one —</option>
        {tenants.data?.map((t) => (
          <option key={t.id} value={t.slug}>
            {t.slug}
          </option>
        ))}
      </select>
      {tenants.error && <span className="error small">{tenants.error.message}</span>}
    </label>
  );
}

export function Layout({ children }: { children: ReactNode }) {
  const { me, tenant, signOut } = useSession();
  const navigate = useNavigate();
  const out = useMutation({ mutationFn: signOut, onSuccess: () => navigate("/signin") });
  const admin = isAdmin(me);
  return (
    <div className="app">
      <header className="topbar">
        <NavLink to="/" className="brand">
          <img src="/favicon.svg" alt="" width={22} height={22} />
          clora
        </NavLink>
        <nav aria-label="Main">
          <NavLink to="/review">Review queue</NavLink>
          {admin && <NavLink to="/admin/agents">Agents</NavLink>}
          {admin && <NavLink to="/admin/keys">API keys</NavLink>}
          {admin && <NavLink to="/admin/users">Users</NavLink>}
          {admin && <NavLink to="/admin/experiments">Experiments</NavLink>}
          {me?.role === "platform_admin" && <NavLink to="/admin/tenants">Tenants</NavLink>}
        </nav>
        <div className="who">
          {me?.role === "platform_admin" ? <TenantPicker /> : <span className="tenant-name">{tenant}</span>}
          <NavLink to="/account" className="user" title="Your account">
            {me?.email} <span className="badge info">{me?.role.replace("_", " ")}</span>
          </NavLink>
          <button type="button" onClick={() => out.mutate()} disabled={out.isPending}>
            Sign out
          </button>
          <ErrorText error={out.error} />
        </div>
      </header>
      <main>{children}</main>
    </div>
  );
}

/** Pages that act on one tenant ask a platform admin to pick one first. */
export function NeedsTenant({ children }: { children: ReactNode }) {
  const { tenant, me } = useSession();
  if (me?.role === "platform_admin" && !tenant) {
    return (
      <section className="card">
        <h1>Pick a tenant</h1>
        <p>As a platform admin you act on one tenant at a time: pick it in the bar above.</p>
      </section>
    );
  }
  return <>{children}</>;
}
