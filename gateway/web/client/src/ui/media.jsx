// Pictures in a post: the blurhash painted at once, in the picture's own proportions, then
// the variant that fits (the browser picks from `srcset`). A picture still processing
// shows its placeholder and says so.
import { decode } from "blurhash";
import { useEffect, useMemo, useState } from "preact/hooks";
import { live } from "../api.js";
import { MEDIA_UPDATED } from "../gql.js";

function placeholder(hash) {
  if (!hash) return null;
  try {
    const canvas = document.createElement("canvas");
    canvas.width = 32;
    canvas.height = 32;
    const context = canvas.getContext("2d");
    const image = context.createImageData(32, 32);
    image.data.set(decode(hash, 32, 32));
    context.putImageData(image, 0, 0);
    return canvas.toDataURL();
  } catch {
    return null;
  }
}

function Picture({ media: given, count, index, mine }) {
  // The author sees their picture turn READY without a reload; others get posts whose
  // pictures are, almost always, processed already.
  const [media, setMedia] = useState(given);
  useEffect(() => setMedia(given), [given]);
  useEffect(() => {
    if (!mine || media.status !== "PROCESSING") return undefined;
    return live(MEDIA_UPDATED, { id: media.id }, (data) => setMedia(data.mediaUpdated));
  }, [mine, media.id, media.status]);
  const blur = useMemo(() => placeholder(media.blurhash), [media.blurhash]);
  const webp = media.variants.filter((v) => v.contentType === "image/webp" && v.name !== "thumb");
  const label = count > 1 ? `Picture ${index + 1} of ${count}` : "Picture";
  if (media.status !== "READY" || webp.length === 0) {
    return (
      <div class="picture pending" role="img" aria-label={`${label}, still processing`}>
        {media.status === "FAILED" ? "This picture could not be processed." : "Processing…"}
      </div>
    );
  }
  const largest = webp.reduce((a, b) => (a.width >= b.width ? a : b));
  return (
    <img
      class="picture"
      src={largest.url}
      srcset={webp.map((v) => `${v.url} ${v.width}w`).join(", ")}
      sizes="(max-width: 700px) 100vw, 640px"
      width={largest.width}
      height={largest.height}
      alt={label}
      loading="lazy"
      decoding="async"
      style={blur ? { backgroundImage: `url(${blur})` } : undefined}
    />
  );
}

export function MediaGrid({ media, mine = false }) {
  if (!media?.length) return null;
  return (
    <div class={`media-grid n${Math.min(media.length, 4)}`}>
      {media.map((item, index) => (
        <Picture key={item.id} media={item} count={media.length} index={index} mine={mine} />
      ))}
    </div>
  );
}
