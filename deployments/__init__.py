"""Entry points and the Ray edge: the `nova` command (`cli`), the embedded stack (`stack`),
the composed settings (`settings`), the Serve application (`app`, `ranking`) and the worker
actors (`workers`). Nothing else in Nova imports this package."""
