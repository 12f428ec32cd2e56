"""Keyboard shortcuts that act in the order they are pressed.

A shortcut clicks a button; each click sends its event to the server on a request of its
own, and the server runs a tab's labelling events one at a time in the order they join its
queue (`wiring.in_order`). Two keys pressed within a few milliseconds (2 for B, then u to
undo it) sent two requests at once, and on a busy machine the second could join first: the
undo then took back the label before. `window.cstudioPress(button)` clicks a button only
once the click before it has joined the queue (its `queue/join` request answered, or after
five seconds), so the server sees them in the order pressed.
"""

from __future__ import annotations

PRESS_IN_ORDER = """
<script>
(() => {
  let joining = 0, joined = 0, pressed = Promise.resolve();
  const send = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : (input && input.url) || "";
    if (!url.includes("/queue/join")) return send.apply(this, arguments);
    joining += 1;
    return send.apply(this, arguments).finally(() => { joining -= 1; joined += 1; });
  };
  const joinedSince = (before) => new Promise((done) => {
    const since = Date.now();
    const check = () => ((joined > before && joining === 0) || Date.now() - since > 5000
      ? done() : setTimeout(check, 10));
    check();
  });
  window.cstudioPress = (button) => {
    pressed = pressed.then(() => {
      const before = joined;
      button.click();
      return joinedSince(before);
    });
  };
})();
</script>
"""
