// Who is signed in. The session itself is an HttpOnly cookie the UI never sees; the readable
// CSRF cookie tells whether asking /api/auth/me is worth it.
import { useQueryClient } from "@tanstack/react-query";
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from "react";
import {
  api,
  readCookie,
  type Schemas,
  setTenantScope,
  UNAUTHENTICATED_EVENT,
  unwrap,
} from "../api/client";

export type Me = Schemas["Me"];
export type Role = "operator" | "admin" | "platform_admin";

interface SessionState {
  status: "loading" | "signed-out" | "signed-in";
  me: Me | null;
  /** Why the user was signed out, to say on the sign-in page. */
  notice: string | null;
  /** The tenant the pages act on: the user's own, or the one a platform admin picked. */
  tenant: string | null;
  signIn: (email: string, password: string) => Promise<Me>;
  signOut: () => Promise<void>;
  pickTenant: (slug: string | null) => void;
}

const SessionContext = createContext<SessionState | null>(null);
const PICKED_TENANT = "clora.tenant";

export function SessionProvider({ children }: { children: ReactNode }) {
  // Without the readable CSRF cookie there is no session to ask about.
  const [status, setStatus] = useState<SessionState["status"]>(() => (readCookie("clora_csrf") ? "loading" : "signed-out"));
  const [me, setMe] = useState<Me | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [picked, setPicked] = useState<string | null>(() => sessionStorage.getItem(PICKED_TENANT));
  const queryClient = useQueryClient();

  const adopt = useCallback(
    (who: Me | null) => {
      // What one user read is never shown to the next one signing in on this tab.
      if (!who) queryClient.clear();
      setMe(who);
      setStatus(who ? "signed-in" : "signed-out");
    },
    [queryClient],
  );

  useEffect(() => {
    if (!readCookie("clora_csrf")) return;
    unwrap(api.GET("/api/auth/me"))
      .then(adopt)
      .catch(() => adopt(null));
  }, [adopt]);

  useEffect(() => {
    const expired = () => {
      setNotice("Your session has ended. Sign in again.");
      adopt(null);
    };
    window.addEventListener(UNAUTHENTICATED_EVENT, expired);
    return () => window.removeEventListener(UNAUTHENTICATED_EVENT, expired);
  }, [adopt]);

  const isPlatformAdmin = me?.role === "platform_admin";
  const tenant = isPlatformAdmin ? picked : (me?.tenant ?? null);
  // Set during render, not in an effect, so that children's first requests already carry it.
  setTenantScope(isPlatformAdmin ? picked : null);

  const signIn = useCallback(
    async (email: string, password: string) => {
      const who = await unwrap(api.POST("/api/auth/login", { body: { email, password } }));
      setNotice(null);
      adopt(who);
      return who;
    },
    [adopt],
  );

  const signOut = useCallback(async () => {
    try {
      await unwrap(api.POST("/api/auth/logout"));
    } finally {
      sessionStorage.removeItem(PICKED_TENANT);
      setPicked(null);
      setNotice(null);
      adopt(null);
    }
  }, [adopt]);

  const pickTenant = useCallback((slug: string | null) => {
    if (slug) sessionStorage.setItem(PICKED_TENANT, slug);
    else sessionStorage.removeItem(PICKED_TENANT);
    setPicked(slug);
  }, []);

  const value = useMemo(
    () => ({ status, me, notice, tenant, signIn, signOut, pickTenant }),
    [status, me, notice, tenant, signIn, signOut, pickTenant],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionState {
  const state = useContext(SessionContext);
  if (!state) throw new Error("useSession outside SessionProvider");
  return state;
}

export function isAdmin(me: Me | null): boolean {
  return me?.role === "admin" || me?.role === "platform_admin";
}
