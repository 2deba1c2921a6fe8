// sortloop operator strip: selection, palette clicks and keyboard shortcuts.
// Runs as the js_on_load of a gr.HTML (element, trigger, watch are given). Actions go to the server with
// trigger('submit', {...}); the server checks every one again.
const st = element.__sl || (element.__sl = {selected: null});
const cards = () => Array.from(element.querySelectorAll('.sl-card'));
function mark() {
  const cs = cards();
  if (!cs.length) return;
  if (!st.selected || !cs.some(c => c.dataset.id === st.selected)) st.selected = cs[0].dataset.id;
  cs.forEach(c => c.classList.toggle('sl-selected', c.dataset.id === st.selected));
}
function move(step) {
  const cs = cards();
  let i = cs.findIndex(c => c.dataset.id === st.selected) + step;
  i = Math.max(0, Math.min(cs.length - 1, i));
  if (cs[i]) { st.selected = cs[i].dataset.id; mark(); cs[i].scrollIntoView({block: 'nearest'}); }
}
function act(action, cls) {
  if (action === 'undo' || action === 'pause') { trigger('submit', {action}); return; }
  if (!st.selected) return;
  trigger('submit', {action, item_id: st.selected, class_name: cls || null});
  move(1);
}
element.addEventListener('click', (e) => {
  const card = e.target.closest('.sl-card');
  if (card) { st.selected = card.dataset.id; mark(); return; }
  const b = e.target.closest('[data-act]');
  if (b) act(b.dataset.act, b.dataset.class);
});
if (!element.__slKeys) {
  element.__slKeys = true;
  document.addEventListener('keydown', (e) => {
    if (element.offsetParent === null) return;  // the Operator tab is not shown
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest('input, textarea, select, [contenteditable="true"]')) return;
    const strip = element.querySelector('.sl-strip');
    const order = strip && strip.dataset.shortcuts ? strip.dataset.shortcuts.split(',') : [];
    const k = e.key.toLowerCase();
    if (e.target.closest && e.target.closest('button') && (k === 'enter' || k === ' ')) return;
    let done = true;
    if (/^[1-9]$/.test(k) && order[+k - 1]) act('reclass', order[+k - 1]);
    else if (k === 'enter' || k === 'y') act('confirm');
    else if (k === 'n') act('not_item');
    else if (k === 'u') act('undo');
    else if (k === 'j') move(1);
    else if (k === 'k') move(-1);
    else if (k === 'p') act('pause');
    else done = false;
    if (done) e.preventDefault();
  });
}
watch('value', mark);
mark();
