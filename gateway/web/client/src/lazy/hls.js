// hls.js (its light build: no subtitles, alternate audio or DRM, which Nova's streams do
// not have), built apart from the app as /assets/hls-<hash>.js and imported by
// `player.js` only in a browser that cannot play HLS itself.
export { default } from "hls.js/light";
