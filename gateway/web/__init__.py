"""Nova's web client and GraphiQL, served by the gateway.

`client/` holds the client's sources (built with Node.js by `deployments.web_build` into
`dist/`, which is not checked in); `site` gives the routes that serve the build: the
pages at `/` and the client's own paths, the hashed assets under `/assets/`, GraphiQL at
`/graphql` for browsers.
"""

from pathlib import Path

from gateway.web.dist import Dist
from gateway.web.site import WebSite, content_security_policy, wants_graphiql

__all__ = ["CLIENT_DIR", "DIST_DIR", "Dist", "WebSite", "content_security_policy", "wants_graphiql"]

CLIENT_DIR = Path(__file__).resolve().parent / "client"
DIST_DIR = Path(__file__).resolve().parent / "dist"
