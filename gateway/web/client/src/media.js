// Uploading pictures and videos as Nova's API asks: createUpload gives a signed URL, the
// bytes go there in one PUT (XMLHttpRequest, for its progress events), completeUpload
// queues them for processing, and `mediaUpdated` says when processing ends. Nova's own
// upload path is used on this page's origin, whatever host the server names in it; a URL
// straight into the media store (S3's presigned PUT) is used as given.
import { live, mutate } from "./api.js";
import { COMPLETE_UPLOAD, CREATE_UPLOAD, MEDIA_UPDATED } from "./gql.js";

export const PICTURE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"];
export const VIDEO_TYPES = ["video/mp4", "video/quicktime", "video/webm"];
export const ACCEPTED = [...PICTURE_TYPES, ...VIDEO_TYPES];
// What one post, message or story may carry: up to 4 pictures, or one video alone.
export const MAX_PICTURES = 4;
// The API's limits; checked here too, so a person is not made to wait for a refusal.
const MAX_BYTES = { IMAGE: 20 * 1024 * 1024, VIDEO: 200 * 1024 * 1024 };

export class UploadError extends Error {}

/** "IMAGE", "VIDEO", or null for a file Nova does not take. */
export function kindOf(file) {
  if (PICTURE_TYPES.includes(file.type)) return "IMAGE";
  if (VIDEO_TYPES.includes(file.type)) return "VIDEO";
  return null;
}

/**
 * Which of `files` may join `current` (items with a `kind`): up to 4 pictures, or one
 * video alone. Gives {accepted, refused} where refused says why, or null.
 */
export function selectable(current, files) {
  const kinds = current.map((item) => item.kind);
  const accepted = [];
  let refused = null;
  for (const file of files) {
    const kind = kindOf(file);
    if (kind === null) {
      accepted.push(file); // refused by `upload`, with a message beside its name
    } else if (kinds.includes("VIDEO") || (kind === "VIDEO" && kinds.length > 0)) {
      refused = "One video alone, or up to 4 pictures.";
    } else if (kinds.length >= MAX_PICTURES) {
      refused = `Up to ${MAX_PICTURES} pictures.`;
    } else {
      kinds.push(kind);
      accepted.push(file);
    }
  }
  return { accepted, refused };
}

function put(path, headers, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", path);
    for (const { name, value } of headers) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) return resolve();
      let message = `The upload was refused (${request.status}).`;
      try {
        message = JSON.parse(request.responseText).errors[0].message;
      } catch {
        // not Nova's JSON: keep the status
      }
      reject(new UploadError(message));
    };
    request.onerror = () => reject(new UploadError("The upload was cut off. Try again."));
    request.send(file);
  });
}

/** Upload one file; `onProgress(0..1)` as bytes go. Resolves to the Media (PROCESSING). */
export async function upload(file, onProgress = () => {}) {
  const kind = kindOf(file);
  if (kind === null) {
    throw new UploadError(`${file.name}: only JPEG, PNG, WebP or GIF pictures, or MP4, QuickTime or WebM videos.`);
  }
  if (file.size > MAX_BYTES[kind]) {
    const limit = MAX_BYTES[kind] / 1024 / 1024;
    throw new UploadError(`${file.name}: ${kind === "VIDEO" ? "a video" : "a picture"} may be up to ${limit} MB.`);
  }
  const { createUpload } = await mutate(CREATE_UPLOAD, {
    input: { filename: file.name || (kind === "VIDEO" ? "video" : "picture"), contentType: file.type, size: file.size },
  });
  const url = new URL(createUpload.url);
  const target = url.pathname.includes("/media/uploads/") ? url.pathname + url.search : url.href;
  await put(target, createUpload.headers, file, onProgress);
  onProgress(1);
  return (await mutate(COMPLETE_UPLOAD, { id: createUpload.id })).completeUpload;
}

/**
 * Follow a media until processing ends (the viewer's own, or a post's, which anyone may
 * follow): `onChange(media)` with each
 * state `mediaUpdated` reports (READY or FAILED last). Returns what stops following.
 */
export function whenProcessed(media, onChange) {
  if (media.status === "READY" || media.status === "FAILED") return () => {};
  return live(MEDIA_UPDATED, { id: media.id }, (data) => onChange(data.mediaUpdated));
}
