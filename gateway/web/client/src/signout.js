// Signing out: the pending ranking events go first, then the session ends on the server.
import { flush } from "./analytics.js";
import { mutate, resetSocket } from "./api.js";
import { LOGOUT } from "./gql.js";
import { navigate } from "./router.js";
import { clearSession, session } from "./session.js";

export async function signOut() {
  const current = session.value;
  await flush();
  if (current) await mutate(LOGOUT, { refreshToken: current.refreshToken }).catch(() => {});
  clearSession();
  resetSocket();
  navigate("/login");
}
