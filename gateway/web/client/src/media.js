// Uploading a picture as Nova's API asks: createUpload gives a signed URL, the bytes go
// there in one PUT (XMLHttpRequest, for its progress events), completeUpload queues them
// for processing. The URL's path is used on this page's own origin, whatever host the
// server names in it.
import { mutate } from "./api.js";
import { COMPLETE_UPLOAD, CREATE_UPLOAD } from "./gql.js";

export const ACCEPTED = ["image/jpeg", "image/png", "image/webp", "image/gif"];

class UploadError extends Error {}

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
export async function uploadPicture(file, onProgress = () => {}) {
  if (!ACCEPTED.includes(file.type)) throw new UploadError(`${file.name}: only JPEG, PNG, WebP or GIF pictures.`);
  const { createUpload } = await mutate(CREATE_UPLOAD, {
    input: { filename: file.name || "picture", contentType: file.type, size: file.size },
  });
  const url = new URL(createUpload.url);
  await put(url.pathname + url.search, createUpload.headers, file, onProgress);
  onProgress(1);
  return (await mutate(COMPLETE_UPLOAD, { id: createUpload.id })).completeUpload;
}
