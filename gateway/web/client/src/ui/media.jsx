// Pictures and videos wherever they are shown (posts, messages, stories). A picture paints
// its blurhash at once, in its own proportions, then the variant that fits (the browser
// picks from `srcset`); a video shows its poster with the native controls and plays its
// HLS stream (`player.js`). Media still processing shows a placeholder and says so.
import { decode } from "blurhash";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { whenProcessed } from "../media.js";
import { attachStream } from "../player.js";

const FEED_SIZES = "(max-width: 700px) 100vw, 640px";

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

const blurStyle = (blur) => (blur ? { backgroundImage: `url(${blur})` } : undefined);

/**
 * The media as it is now: with `follow` (the owner's own, or a post's, which anyone may
 * follow), media still processing turns READY without a reload.
 */
export function useLiveMedia(given, follow) {
  const [media, setMedia] = useState(given);
  useEffect(() => setMedia(given), [given]);
  useEffect(() => (follow ? whenProcessed(media, setMedia) : undefined), [follow, media.id, media.status]);
  return media;
}

function Pending({ media, label, blur }) {
  const what = media.kind === "VIDEO" ? "video" : "picture";
  return (
    <div
      class="picture pending"
      role="img"
      aria-label={`${label}, ${media.status === "FAILED" ? "could not be processed" : "still processing"}`}
      style={blurStyle(blur)}
    >
      <span>{media.status === "FAILED" ? `This ${what} could not be processed.` : "Processing…"}</span>
    </div>
  );
}

export function Picture({ media, label, sizes = FEED_SIZES, blur }) {
  const webp = media.variants.filter((v) => v.contentType === "image/webp" && v.name !== "thumb");
  if (webp.length === 0) return <Pending media={media} label={label} blur={blur} />;
  const largest = webp.reduce((a, b) => (a.width >= b.width ? a : b));
  return (
    <img
      class="picture"
      src={largest.url}
      srcset={webp.map((v) => `${v.url} ${v.width}w`).join(", ")}
      sizes={sizes}
      width={largest.width}
      height={largest.height}
      alt={label}
      loading="lazy"
      decoding="async"
      style={blurStyle(blur)}
    />
  );
}

/** A READY video: its poster, the native controls, the HLS stream (loaded on play unless `autoPlay`). */
export function Video({ media, label, autoPlay = false, onEnded, blur }) {
  const ref = useRef(null);
  const [problem, setProblem] = useState(null);
  useEffect(() => {
    setProblem(null);
    return attachStream(ref.current, media.url, { eager: autoPlay, onError: setProblem });
  }, [media.url, autoPlay]);
  return (
    <div class="video">
      <video
        ref={ref}
        class="picture"
        controls
        playsInline
        autoPlay={autoPlay}
        preload={autoPlay ? "auto" : "metadata"}
        poster={media.posterUrl ?? undefined}
        width={media.width ?? undefined}
        height={media.height ?? undefined}
        aria-label={label}
        onEnded={onEnded}
        onPlaying={() => setProblem(null)}
        style={blurStyle(blur)}
      />
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}

/** One picture or video, whatever its state. */
export function MediaView({ media, label, sizes, autoPlay, onEnded }) {
  const blur = useMemo(() => placeholder(media.blurhash), [media.blurhash]);
  if (media.status !== "READY") return <Pending media={media} label={label} blur={blur} />;
  if (media.kind === "VIDEO") return <Video media={media} label={label} autoPlay={autoPlay} onEnded={onEnded} blur={blur} />;
  return <Picture media={media} label={label} sizes={sizes} blur={blur} />;
}

function LiveMedia({ media: given, follow, ...shown }) {
  const media = useLiveMedia(given, follow);
  return <MediaView media={media} {...shown} />;
}

function labelOf(media, count, index) {
  const what = media.kind === "VIDEO" ? "Video" : "Picture";
  return count > 1 ? `${what} ${index + 1} of ${count}` : what;
}

/** A post's or a message's media: 1 to 4 pictures in a grid, or one video. */
export function MediaGrid({ media, follow = false, sizes = FEED_SIZES }) {
  if (!media?.length) return null;
  return (
    <div class={`media-grid n${Math.min(media.length, 4)}`}>
      {media.map((item, index) => (
        <LiveMedia key={item.id} media={item} follow={follow} sizes={sizes} label={labelOf(item, media.length, index)} />
      ))}
    </div>
  );
}
