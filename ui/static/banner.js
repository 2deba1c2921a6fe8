// sortloop hazard banner: beeps every few seconds while a hazard alarm waits; its link opens the Hazards tab.
// Runs as the js_on_load of a gr.HTML (element, watch are given).
const st = element.__sl || (element.__sl = {timer: null, audio: null});
function beep() {
  if (!st.audio) st.audio = new Audio('/console/beep.wav');
  st.audio.currentTime = 0;
  st.audio.play().catch(() => { element.dataset.muted = 'click anywhere to allow the alarm sound'; });
}
function update() {
  const active = element.querySelector('.sl-banner');
  document.body.classList.toggle('sl-alarm', !!active);
  if (active && !st.timer) { beep(); st.timer = setInterval(beep, 4000); }
  if (!active && st.timer) { clearInterval(st.timer); st.timer = null; }
}
element.addEventListener('click', (e) => {
  if (!e.target.closest('.sl-goto-hazards')) return;
  e.preventDefault();
  const tab = Array.from(document.querySelectorAll('button[role="tab"]')).find(b => b.textContent.trim() === 'Hazards');
  if (tab) tab.click();
});
watch('value', update);
update();
