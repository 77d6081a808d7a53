// Live order status: the order page listens on the shop's socket and
// shows each step as it happens. The page works without it.
(function () {
  var me = document.currentScript;
  var order = me && me.dataset.order;
  var token = me && me.dataset.token;
  if (!order || !token || !window.WebSocket) return;
  var words = {
    "order.confirmed": "Order confirmed", "order.processing": "Being packed",
    "order.shipped": "Shipped", "order.delivered": "Delivered",
    "order.cancelled": "Cancelled", "order.failed": "Order failed",
    "payment.refunded": "Refunded"
  };
  var status = document.getElementById("status");
  var toast = document.getElementById("toast");
  function show(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(show.timer);
    show.timer = setTimeout(function () { toast.hidden = true; }, 6000);
  }
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var socket = new WebSocket(scheme + location.host + "/ws", ["emporium.v1", "bearer." + token]);
  socket.onmessage = function (event) {
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (!message.data || message.data.order_id !== order) return;
    if (message.data.status && message.type.indexOf("order.") === 0) {
      status.textContent = message.data.status;
      status.className = "status " + message.data.status;
    }
    if (words[message.type]) show(words[message.type]);
  };
  // The token lives minutes: when the server closes for it, a reload
  // brings a fresh page and socket.
  socket.onclose = function (event) {
    if (event.code === 4001) setTimeout(function () { location.reload(); }, 1000);
  };
})();

// Operations page: the figures are fetched again every few seconds and
// swapped in. The page is complete without it. A refusal (signed out, no
// longer staff) stops it; a network failure slows it down.
(function () {
  var ops = document.getElementById("ops");
  if (!ops || !window.fetch || !window.DOMParser) return;
  var every = Math.max(1000, parseInt(ops.dataset.every, 10) || 5000);
  function refresh() {
    fetch("/admin/ops?fragment=1", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok || r.redirected) return;
        return r.text().then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("ops");
          if (!fresh) return;
          ops.replaceWith(fresh);
          ops = fresh;
          setTimeout(refresh, every);
        });
      })
      .catch(function () { setTimeout(refresh, every * 4); });
  }
  setTimeout(refresh, every);
})();
