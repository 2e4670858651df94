/*
 * A sample's content on the rating page: rate.js writes a text sample's text; this shows an image
 * sample's image, and the large view of an image (a click on it, or Z for the left and X for the
 * right; Escape, a click or the same key closes it).
 *
 * The server sends an image pair as opaque URLs (content hashes) with the images' sizes; nothing
 * here names a sample or its source. A small image shown larger than it is (a 28 px digit) is
 * drawn with sharp pixels (image-rendering: pixelated) rather than blurred.
 */
(() => {
  "use strict";

  const byId = (id) => document.getElementById(id);
  const LABELS = { left: "Left", right: "Right" };
  const sides = {};
  for (const side of Object.keys(LABELS)) {
    sides[side] = { button: byId(`${side}-image-button`), img: byId(`${side}-image`), text: byId(`${side}-text`) };
  }
  const pair = byId("pair");
  const zoom = byId("image-zoom");
  const zoomImage = byId("zoom-image");
  const zoomSide = byId("zoom-side");
  const zoomClose = byId("zoom-close");
  let images = null; // {left: {url, width, height} | null, right: …} of the pair on screen
  let zoomed = null; // the side shown large

  function updateRendering(img) {
    if (!img.naturalWidth || !img.clientWidth || !img.clientHeight) return;
    // object-fit: contain draws the image at the smaller of the two ratios.
    const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
    img.classList.toggle("pixelated", scale > 1.01);
  }

  function updateAll() {
    for (const parts of Object.values(sides)) if (!parts.button.hidden) updateRendering(parts.img);
    if (zoom.open) updateRendering(zoomImage);
  }

  function place(img, image, side) {
    img.width = image.width;
    img.height = image.height;
    img.alt = `${LABELS[side]} image`;
    if (img.getAttribute("src") !== image.url) {
      img.classList.remove("pixelated");
      img.src = image.url;
    } else {
      updateRendering(img);
    }
  }

  function show(next) {
    closeZoom();
    images = next;
    pair.classList.toggle("has-images", Boolean(next));
    for (const [side, parts] of Object.entries(sides)) {
      const image = next ? next[side] : null;
      parts.button.hidden = !image;
      parts.text.hidden = Boolean(image);
      if (image) place(parts.img, image, side);
      else parts.img.removeAttribute("src");
    }
    requestAnimationFrame(updateAll);
  }

  function openZoom(side) {
    const image = images ? images[side] : null;
    if (!image) return;
    zoomed = side;
    zoom.dataset.side = side;
    zoomSide.textContent = `${LABELS[side]} image`;
    if (!zoom.open) zoom.showModal();
    place(zoomImage, image, side);
    requestAnimationFrame(() => updateRendering(zoomImage));
  }

  function closeZoom() {
    if (zoom.open) zoom.close();
  }

  for (const parts of Object.values(sides)) {
    parts.img.addEventListener("load", () => updateRendering(parts.img));
    parts.button.addEventListener("click", () => openZoom(parts.button.dataset.zoom));
  }
  zoomImage.addEventListener("load", () => updateRendering(zoomImage));
  zoomImage.addEventListener("click", closeZoom);
  zoomClose.addEventListener("click", closeZoom);
  // A click on the backdrop lands on the dialog itself.
  zoom.addEventListener("click", (event) => {
    if (event.target === zoom) closeZoom();
  });
  zoom.addEventListener("close", () => {
    // The close event comes a task after close(): a key or click in between may have opened the
    // dialog again (X right after a click closed it), and that open must keep its side.
    if (zoom.open) return;
    zoomed = null;
    delete zoom.dataset.side;
    // Back to the pair, so that Enter submits rather than pressing a button under the focus.
    const task = byId("task");
    if (task && !task.hidden) task.focus({ preventScroll: true });
  });
  window.addEventListener("resize", updateAll);

  // Captured before rate.js sees the key: Z / X and Escape belong to the images.
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing || !images) return;
      if (event.target instanceof HTMLElement && event.target.matches("textarea, input")) return;
      if (document.querySelector("dialog[open]:not(#image-zoom)")) return; // the skip dialog
      const key = event.key.toLowerCase();
      const side = key === "z" ? "left" : key === "x" ? "right" : null;
      if (side && images[side]) {
        if (zoom.open && zoomed === side) closeZoom();
        else openZoom(side);
      } else if (key === "escape" && zoom.open) {
        closeZoom();
      } else {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );

  window.LovelaceSampleContent = { show, openZoom, closeZoom };
})();
