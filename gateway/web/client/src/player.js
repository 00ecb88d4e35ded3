// Playing a video's HLS stream (Nova's transcodes: H.264 and AAC in MPEG-TS, a master
// playlist naming one playlist per rendition). A browser that plays HLS itself (Safari,
// recent Chrome) is given the playlist as the video's source; any other plays it through
// hls.js over Media Source Extensions, imported only then: it is a chunk of its own,
// several times the size of the rest of the client, so the first page never loads it.
const HLS_TYPE = "application/vnd.apple.mpegurl";
const NO_PLAYER = "This browser cannot play this video.";

let hlsModule = null;
// LAZY_HLS_URL: where build.mjs put hls.js (src/lazy/hls.js), an asset of this origin.
const loadHls = () => (hlsModule ??= import(LAZY_HLS_URL).then((module) => module.default));

export function playsHlsNatively(video) {
  return video.canPlayType(HLS_TYPE) !== "";
}

/**
 * Play `url` (a master playlist) in `video`. With `eager` false only the playlists load
 * until the person presses play (a feed of videos costs no segments it does not show).
 * `onError(message)` when it cannot play. Returns what detaches the stream.
 */
export function attachStream(video, url, { eager = false, onError = () => {} } = {}) {
  // The element's own error: a stream it cannot decode, or a source the page refuses.
  const failed = () => video.error && onError(NO_PLAYER);
  video.addEventListener("error", failed);
  const detach = playsHlsNatively(video) ? playNatively(video, url) : playWithHlsJs(video, url, eager, onError);
  return () => {
    video.removeEventListener("error", failed);
    detach();
  };
}

function playNatively(video, url) {
  video.dataset.player = "native";
  video.src = url;
  return () => {
    video.removeAttribute("src");
    video.load();
  };
}

function playWithHlsJs(video, url, eager, onError) {
  let hls = null;
  let detached = false;
  loadHls().then(
    (Hls) => {
      if (detached) return;
      if (!Hls.isSupported()) {
        video.dataset.player = "none";
        onError(NO_PLAYER);
        return;
      }
      video.dataset.player = "hls.js";
      hls = new Hls({
        // Transmux on this thread: a worker would be made from a blob: URL, which the
        // page's Content-Security-Policy (scripts from this origin only) refuses.
        enableWorker: false,
        autoStartLoad: eager,
        capLevelToPlayerSize: true,
        maxBufferLength: 20,
      });
      let recoveries = 0;
      hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
        video.dataset.levels = data.levels.map((level) => `${level.height}p`).join(" ");
      });
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        // A media error (a decoder hiccup) and a network error (a dropped segment) are
        // worth a retry or two; after that, or for anything else, say so.
        const retry = { [Hls.ErrorTypes.MEDIA_ERROR]: "recoverMediaError", [Hls.ErrorTypes.NETWORK_ERROR]: "startLoad" }[data.type];
        if (retry && recoveries < 2) {
          recoveries += 1;
          hls[retry]();
          return;
        }
        onError(NO_PLAYER);
        hls.destroy();
        hls = null;
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      if (!eager) video.addEventListener("play", () => hls?.startLoad(), { once: true });
    },
    () => onError("The video player could not be loaded. Try again."),
  );
  return () => {
    detached = true;
    hls?.destroy();
    hls = null;
  };
}
