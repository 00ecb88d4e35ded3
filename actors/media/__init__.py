"""Media processing: the Ray tasks that handle uploads, and their pure cores.

- `sniff`: what an upload is, judged by its first bytes (`sniff`, `SNIFF_BYTES`).
- `images`: an uploaded image made safe to serve: oriented, stripped of metadata, resized
  into variants, with a blurhash (`process_image`, `ImageRejected`).
"""
