"""Media processing: the Ray tasks that handle uploads, and their pure cores.

- `sniff`: what an upload is, judged by its first bytes (`sniff`, `SNIFF_BYTES`).
- `images`: an uploaded image made safe to serve: oriented, stripped of metadata, resized
  into variants, with a blurhash (`process_image`, `ImageRejected`).
- `video`: an uploaded video made into HLS renditions and a poster by ffmpeg
  (`process_video`, `VideoRejected`); `ffprobe`: what a video is, and running ffmpeg's
  tools on untrusted files.
- `tasks`: the Ray tasks running them against the media store.
- `processor`: the actor that leases jobs from PostgreSQL and runs the tasks.
"""

# The Ray resource a video transcode holds; every node declares how many it runs at once
# (`deployments.stack.ray_head`). Here, not in `tasks`, so declaring it imports no Ray.
TRANSCODE = "transcode"
