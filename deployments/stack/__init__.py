"""The embedded stack `nova up` and the test session run on one machine: one module per
server's lifecycle (postgres, redis_server, broker, smtp, ray_head), their layout, and the
`Stack` that starts the ones whose URL is unset (`embedded`)."""

from deployments.stack.embedded import URL_VARIABLES, Stack, read_env_file
from deployments.stack.layout import Layout, dev_layout, layout_for_tests
from deployments.stack.processes import LOCALHOST, PRIVATE_UMASK, StackError, port_open
from deployments.stack.ray_head import SERVE_FAST_PATH, Ray

__all__ = [
    "LOCALHOST",
    "PRIVATE_UMASK",
    "SERVE_FAST_PATH",
    "URL_VARIABLES",
    "Layout",
    "Ray",
    "Stack",
    "StackError",
    "dev_layout",
    "layout_for_tests",
    "port_open",
    "read_env_file",
]
