// sortloop operator strip: selection, palette clicks and keyboard shortcuts.
// Runs as the js_on_load of a gr.HTML (element, trigger, watch are given). Actions go to the server with
// trigger('submit', {...}); the server checks every one again (one answer per item and person, undo limits).
// Keys act on the selected item only: a click never leaves a strip button focused, and Enter or Space on any
// focused button of the Operator view (a tab, Grab frame) is taken by the one handler below, never by the
// button. (Chromium marks a mouse-focused button :focus-visible once a key is pressed, so keyboard focus
// cannot be told apart there.)
const st = element.__sl || (element.__sl = {selected: null, change: null, answered: ''});
const cards = () => Array.from(element.querySelectorAll('.sl-card'));
const open = (c) => !c.dataset.mine;  // not answered by me yet
function mark() {
  const cs = cards();
  const strip = element.querySelector('.sl-strip');
  const answered = strip ? strip.dataset.answered || '' : '';
  if (answered && answered !== st.answered && answered === st.selected) { st.answered = answered; advance(); return; }
  st.answered = answered;
  if (!st.selected || !cs.some(c => c.dataset.id === st.selected)) {
    const first = cs.find(open);
    st.selected = first ? first.dataset.id : null;
  }
  if (st.change && st.change !== st.selected) st.change = null;
  cs.forEach(c => c.classList.toggle('sl-selected', c.dataset.id === st.selected));
  const mode = element.querySelector('.sl-mode');
  if (mode) {
    const card = cs.find(c => c.dataset.id === st.selected);
    mode.textContent = st.change && card ? `Changing your answer "${card.dataset.mine}": press the new answer (Esc cancels)` : '';
  }
}
function advance() {  // to the next item I have not answered (older first, then from the top)
  const cs = cards();
  const i = cs.findIndex(c => c.dataset.id === st.selected);
  const next = cs.slice(i + 1).find(open) || cs.slice(0, Math.max(i, 0)).find(open);
  st.selected = next ? next.dataset.id : null;
  st.change = null;
  mark();
  if (next) next.scrollIntoView({block: 'nearest'});
}
function move(step) {
  const cs = cards();
  let i = cs.findIndex(c => c.dataset.id === st.selected) + step;
  i = Math.max(0, Math.min(cs.length - 1, i));
  if (cs[i]) { st.selected = cs[i].dataset.id; mark(); cs[i].scrollIntoView({block: 'nearest'}); }
}
function armChange() {
  const card = cards().find(c => c.dataset.id === st.selected);
  if (card && card.dataset.mine) { st.change = st.selected; mark(); }
}
function act(action, cls) {
  if (action === 'undo' || action === 'pause') { trigger('submit', {action}); return; }
  if (action === 'change') { armChange(); return; }
  if (!st.selected) return;
  const change = st.change === st.selected;
  st.change = null;
  trigger('submit', {action, item_id: st.selected, class_name: cls || null, change});
}
// a mouse click never focuses a strip button, so a later Enter cannot click it again
element.addEventListener('mousedown', (e) => { if (e.target.closest('button')) e.preventDefault(); });
element.addEventListener('click', (e) => {
  const card = e.target.closest('.sl-card');
  if (card) { st.selected = card.dataset.id; st.change = null; mark(); return; }
  const b = e.target.closest('[data-act]');
  if (b) { b.blur(); act(b.dataset.act, b.dataset.class); }
});
function onKey(e) {
  if (element.offsetParent === null) return;  // the Operator tab is not shown
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest && e.target.closest('input, textarea, select, [contenteditable="true"]')) return;
  const strip = element.querySelector('.sl-strip');
  const order = strip && strip.dataset.shortcuts ? strip.dataset.shortcuts.split(',') : [];
  const k = e.key.toLowerCase();
  let done = true;
  if (/^[1-9]$/.test(k) && order[+k - 1]) act('reclass', order[+k - 1]);
  else if (k === 'enter' || k === 'y') act('confirm');
  else if (k === 'n') act('not_item');
  else if (k === 'u') act('undo');
  else if (k === 'c') act('change');
  else if (k === 'escape') { st.change = null; mark(); }
  else if (k === 'j') move(1);
  else if (k === 'k') move(-1);
  else if (k === 'p') act('pause');
  else if (k === ' ' && e.target.closest && e.target.closest('button')) { /* no click on a focused button */ }
  else done = false;
  if (done) { e.preventDefault(); e.stopPropagation(); if (e.target.blur) e.target.blur(); }
}
if (!element.__slKeys) {
  element.__slKeys = true;
  document.addEventListener('keydown', onKey, true);  // capture: before a focused button sees the key
}
watch('value', mark);
mark();
