// sortloop missed-item box tool: drag on the grabbed frame; the box is sent in the frame's own pixels.
// Runs as the js_on_load of a gr.HTML (element, trigger, watch are given).
const st = element.__sl || (element.__sl = {box: null, start: null});
const root = () => element.querySelector('.sl-draw');
function scale() {
  const img = element.querySelector('.sl-draw-stage img');
  const r = img.getBoundingClientRect();
  return {r, sx: +root().dataset.w / r.width, sy: +root().dataset.h / r.height};
}
function at(e) {
  const {r, sx, sy} = scale();
  const x = Math.min(Math.max(e.clientX - r.left, 0), r.width), y = Math.min(Math.max(e.clientY - r.top, 0), r.height);
  return [x * sx, y * sy];
}
function draw() {
  const rect = element.querySelector('.sl-rect'), label = element.querySelector('.sl-draw-box');
  if (!rect) return;
  if (!st.box) { rect.hidden = true; return; }
  const {sx, sy} = scale();
  const [x1, y1, x2, y2] = st.box;
  Object.assign(rect.style, {left: (x1 / sx) + 'px', top: (y1 / sy) + 'px',
                             width: ((x2 - x1) / sx) + 'px', height: ((y2 - y1) / sy) + 'px'});
  rect.hidden = false;
  if (label) label.textContent = 'box ' + st.box.map(Math.round).join(', ');
}
element.addEventListener('pointerdown', (e) => {
  const stage = e.target.closest('.sl-draw-stage');
  if (!stage) return;
  e.preventDefault();
  stage.setPointerCapture(e.pointerId);
  st.start = at(e);
  st.box = [...st.start, ...st.start];
  draw();
});
element.addEventListener('pointermove', (e) => {
  if (!st.start) return;
  const [x, y] = at(e), [x0, y0] = st.start;
  st.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
  draw();
});
element.addEventListener('pointerup', () => { st.start = null; });
element.addEventListener('click', (e) => {
  const b = e.target.closest('[data-act="report"]');
  if (!b) return;
  const label = element.querySelector('.sl-draw-box');
  if (!st.box) { if (label) label.textContent = 'draw a box first'; return; }
  const cls = element.querySelector('.sl-draw-class').value;
  trigger('submit', {action: 'report', frame_id: root().dataset.frame, box: st.box.map(v => Math.round(v * 10) / 10),
                     class_name: cls});
  st.box = null;
});
watch('value', () => { st.box = null; st.start = null; draw(); });
