// Routes. Signed-out visitors see the sign-in page; admin pages need an admin.
import type { ReactNode } from "react";
import { Navigate, Route, Routes, useLocation } from "react-router";
import { isAdmin, useSession } from "./auth/session";
import { Layout, NeedsTenant } from "./components/Layout";
import { Loading } from "./components/ui";
import { AgentPage } from "./pages/AgentPage";
import { AgentsPage } from "./pages/AgentsPage";
import { ExperimentsPage } from "./pages/ExperimentsPage";
import { InteractionPage } from "./pages/InteractionPage";
import { KeysPage } from "./pages/KeysPage";
import { UsersPage } from "./pages/UsersPage";
import { AccountPage } from "./pages/AccountPage";
import { ReviewQueue } from "./pages/ReviewQueue";
import { SignIn } from "./pages/SignIn";
import { TenantsPage } from "./pages/TenantsPage";

function Guard({ admin = false, platform = false, children }: { admin?: boolean; platform?: boolean; children: ReactNode }) {
  const { status, me } = useSession();
  const location = useLocation();
  if (status === "loading") return <Loading what="your session" />;
  if (status === "signed-out") {
    return <Navigate to="/signin" replace state={{ from: location.pathname + location.search }} />;
  }
  const allowed = platform ? me?.role === "platform_admin" : admin ? isAdmin(me) : true;
  return (
    <Layout>
      {allowed ? (
        platform ? children : <NeedsTenant>{children}</NeedsTenant>
      ) : (
        <section className="card">
          <h1>Not for your role</h1>
          <p className="error" role="alert">
            This page needs {platform ? "a platform admin" : "an admin"}; you are signed in as {me?.role}.
          </p>
        </section>
      )}
    </Layout>
  );
}

function Home() {
  const { me } = useSession();
  return <Navigate to={isAdmin(me) ? "/admin/agents" : "/review"} replace />;
}

export function App() {
  return (
    <Routes>
      <Route path="/signin" element={<SignIn />} />
      <Route path="/" element={<Guard><Home /></Guard>} />
      <Route path="/review" element={<Guard><ReviewQueue /></Guard>} />
      <Route path="/review/:id" element={<Guard><InteractionPage /></Guard>} />
      <Route path="/admin/agents" element={<Guard admin><AgentsPage /></Guard>} />
      <Route path="/admin/agents/:name" element={<Guard admin><AgentPage /></Guard>} />
      <Route path="/admin/keys" element={<Guard admin><KeysPage /></Guard>} />
      <Route path="/admin/users" element={<Guard admin><UsersPage /></Guard>} />
      <Route path="/account" element={<Guard><AccountPage /></Guard>} />
      <Route path="/admin/experiments" element={<Guard admin><ExperimentsPage /></Guard>} />
      <Route path="/admin/tenants" element={<Guard platform><TenantsPage /></Guard>} />
      <Route
        path="*"
        element={
          <Guard>
            <section className="card">
              <h1>Not found</h1>
              <p>There is no page here.</p>
            </section>
          </Guard>
        }
      />
    </Routes>
  );
}
