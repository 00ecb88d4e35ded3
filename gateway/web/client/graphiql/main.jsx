/** @jsxImportSource react */
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/graphiql.css";
import { createClient } from "graphql-ws";
import { createRoot } from "react-dom/client";

// The web client keeps its session here; GraphiQL calls with the same user.
function accessToken() {
  try {
    return JSON.parse(localStorage.getItem("nova.session") ?? "null")?.accessToken ?? null;
  } catch {
    return null;
  }
}

const token = accessToken();
const url = new URL("/graphql", location.href).toString();
const wsUrl = url.replace(/^http/, "ws");
const fetcher = createGraphiQLFetcher({
  url,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
  wsClient: createClient({
    url: wsUrl,
    connectionParams: () => {
      const current = accessToken();
      return current ? { authorization: `Bearer ${current}` } : {};
    },
    lazy: true,
  }),
});

createRoot(document.getElementById("graphiql")).render(
  <GraphiQL fetcher={fetcher} defaultEditorToolsVisibility={true} />,
);
