// The Raft Bookstore — checkout page.
// Plain JavaScript, no dependencies. All data from the server is written with
// textContent / DOM nodes, never as HTML.
(function () {
  "use strict";

  var APP_VERSION = "1.0.0";
  var MAX_QUANTITY = 100;
  var CHECKOUT_TIMEOUT_MS = 30000;     // give up on a hanging POST /checkout (it can be retried)
  var AUTO_RETRIES = 6;                // an ambiguous answer is retried this often by itself…
  var RETRY_PAUSE_MAX_MS = 8000;       // …after Retry-After (or a doubling pause) up to this
  var POLL_INTERVAL_MS = 1000;         // GET /orders/{id} once a second…
  var POLL_TIMEOUT_MS = 5000;          // …each request bounded…
  var POLL_MAX_MS = 10 * 60 * 1000;    // …for at most 10 minutes
  var TRACKER_STEPS = ["queued", "executing", "executed"];

  var state = {
    books: [],            // catalogue, as served by GET /books
    booksById: {},        // bookId -> book
    cart: [],             // [{ bookId, title, author, quantity }] in insertion order
    badges: {},           // bookId -> element showing "n in cart" in the catalogue
    submitting: false,
    attempt: null,        // { payload, key, retries } of the last order attempt that may be retried
    tracker: null,        // the running order tracker (see trackOrder)
    trackedOrderId: null  // the order the tracker shows
  };

  var $ = Dom.byId, el = Dom.el, clear = Dom.clear;

  function str(value) {
    return value === undefined || value === null ? "" : String(value);
  }

  // ---------------------------------------------------------------- catalogue

  function loadBooks() {
    var status = $("catalogue-status");
    status.hidden = false;
    status.className = "muted";
    status.textContent = "Loading the catalogue…";

    fetch("/books", { headers: { "Accept": "application/json" } })
      .then(function (response) {
        return readJson(response).then(function (body) {
          if (!response.ok) {
            throw new Error(errorMessage(response, body));
          }
          if (!body || !Array.isArray(body.books)) {
            throw new Error("The catalogue answer had no list of books.");
          }
          return body.books;
        });
      })
      .then(function (books) {
        state.books = books.filter(function (b) { return b && typeof b === "object"; });
        state.booksById = {};
        state.books.forEach(function (b) { state.booksById[str(b.bookId)] = b; });
        status.hidden = true;
        renderBooks();
      })
      .catch(function (err) {
        status.hidden = false;
        status.className = "error-inline";
        clear(status);
        status.appendChild(document.createTextNode("Could not load the catalogue: " + messageOf(err) + " "));
        var retry = el("button", "link-button", "Try again");
        retry.type = "button";
        retry.id = "catalogue-retry";
        retry.addEventListener("click", loadBooks);
        status.appendChild(retry);
        $("book-count").textContent = "";
      });
  }

  function bookMatches(book, needle) {
    if (!needle) return true;
    var haystack = [
      str(book.title), str(book.author), str(book.year),
      Array.isArray(book.genres) ? book.genres.join(" ") : ""
    ].join(" ").toLowerCase();
    return needle.split(/\s+/).every(function (word) {
      return haystack.indexOf(word) !== -1;
    });
  }

  function renderBooks() {
    var list = $("book-list");
    var needle = $("book-filter").value.trim().toLowerCase();
    clear(list);
    state.badges = {};

    var shown = 0;
    state.books.forEach(function (book) {
      if (!bookMatches(book, needle)) return;
      shown += 1;
      list.appendChild(renderBook(book));
    });

    var count = $("book-count");
    if (state.books.length === 0) {
      count.textContent = "";
    } else if (shown === state.books.length) {
      count.textContent = state.books.length + (state.books.length === 1 ? " book" : " books");
    } else {
      count.textContent = shown + " of " + state.books.length + " books";
    }

    if (state.books.length === 0) {
      list.appendChild(el("li", "empty-note", "The catalogue is empty."));
    } else if (shown === 0) {
      list.appendChild(el("li", "empty-note", "No book matches “" + $("book-filter").value.trim() + "”."));
    }
  }

  function renderBook(book) {
    var id = str(book.bookId);
    var li = el("li", "book");
    li.setAttribute("data-book-id", id);

    var info = el("div", "book-info");
    info.appendChild(el("h3", "book-title", str(book.title)));
    var meta = el("p", "book-meta");
    meta.appendChild(el("span", "book-author", str(book.author)));
    if (book.year !== undefined && book.year !== null && book.year !== "") {
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(el("span", "book-year", str(book.year)));
    }
    info.appendChild(meta);
    if (Array.isArray(book.genres) && book.genres.length) {
      var genres = el("ul", "genres");
      genres.setAttribute("aria-label", "Genres");
      book.genres.forEach(function (g) { genres.appendChild(el("li", "genre", str(g))); });
      info.appendChild(genres);
    }
    li.appendChild(info);

    var actions = el("div", "book-actions");
    var badge = el("span", "in-cart");
    badge.setAttribute("aria-live", "polite");
    state.badges[id] = badge;
    updateBadge(id);
    actions.appendChild(badge);

    var button = el("button", "add-book", "Add to cart");
    button.type = "button";
    button.setAttribute("data-book-id", id);
    button.setAttribute("aria-label", "Add “" + str(book.title) + "” to cart");
    actions.appendChild(button);
    li.appendChild(actions);
    return li;
  }

  function updateBadge(bookId) {
    var badge = state.badges[bookId];
    if (!badge) return;
    var item = findCartItem(bookId);
    badge.textContent = item ? item.quantity + " in cart" : "";
    badge.hidden = !item;
  }

  // --------------------------------------------------------------------- cart

  function findCartItem(bookId) {
    for (var i = 0; i < state.cart.length; i++) {
      if (state.cart[i].bookId === bookId) return state.cart[i];
    }
    return null;
  }

  function addToCart(bookId) {
    var book = state.booksById[bookId];
    if (!book) return;
    var item = findCartItem(bookId);
    if (item) {
      item.quantity = Math.min(MAX_QUANTITY, item.quantity + 1);
    } else {
      state.cart.push({
        bookId: bookId,
        title: str(book.title),
        author: str(book.author),
        quantity: 1
      });
    }
    renderCart();
    updateBadge(bookId);
  }

  function removeFromCart(bookId) {
    state.cart = state.cart.filter(function (item) { return item.bookId !== bookId; });
    renderCart();
    updateBadge(bookId);
  }

  function renderCart() {
    var list = $("cart-items");
    clear(list);
    state.cart.forEach(function (item) {
      var li = el("li", "cart-item");
      li.setAttribute("data-book-id", item.bookId);

      var info = el("div", "cart-info");
      info.appendChild(el("span", "cart-title", item.title));
      info.appendChild(el("span", "cart-author", item.author));
      li.appendChild(info);

      var qtyId = "qty-" + item.bookId.replace(/[^A-Za-z0-9_-]/g, "_");
      var label = el("label", "visually-hidden", "Quantity of " + item.title);
      label.htmlFor = qtyId;
      li.appendChild(label);
      var qty = el("input", "cart-quantity");
      qty.type = "number";
      qty.id = qtyId;
      qty.min = "1";
      qty.max = String(MAX_QUANTITY);
      qty.step = "1";
      qty.inputMode = "numeric";
      qty.value = String(item.quantity);
      qty.setAttribute("data-book-id", item.bookId);
      li.appendChild(qty);

      var remove = el("button", "remove-item", "Remove");
      remove.type = "button";
      remove.setAttribute("data-book-id", item.bookId);
      remove.setAttribute("aria-label", "Remove “" + item.title + "” from cart");
      li.appendChild(remove);

      list.appendChild(li);
    });
    $("cart-empty").hidden = state.cart.length > 0;
    updateTotals();
  }

  function updateTotals() {
    var total = state.cart.reduce(function (sum, item) { return sum + item.quantity; }, 0);
    $("cart-total").textContent = String(total);
    $("cart-total-label").textContent = total === 1 ? "book" : "books";
    $("cart-hint").hidden = state.cart.length > 0;
  }

  // Reads a quantity input; returns a non-negative integer or null.
  function parseQuantity(value) {
    var text = String(value).trim();
    if (!/^\d+$/.test(text)) return null;
    var n = parseInt(text, 10);
    return isFinite(n) ? n : null;
  }

  // ----------------------------------------------------------- browser facts

  function browserInfo() {
    var ua = navigator.userAgent || "";
    var rules = [
      ["Edge", /Edg(?:e|A|iOS)?\/([\d.]+)/],
      ["Opera", /OPR\/([\d.]+)/],
      ["Samsung Internet", /SamsungBrowser\/([\d.]+)/],
      ["Firefox", /(?:Firefox|FxiOS)\/([\d.]+)/],
      ["Chrome", /(?:HeadlessChrome|Chrome|CriOS)\/([\d.]+)/],
      ["Safari", /Version\/([\d.]+).*Safari\//]
    ];
    for (var i = 0; i < rules.length; i++) {
      var m = ua.match(rules[i][1]);
      if (m) return { name: rules[i][0], version: m[1] };
    }
    return { name: "unknown", version: "" };
  }

  function deviceInfo() {
    var ua = navigator.userAgent || "";
    var uad = navigator.userAgentData;
    var os = "unknown";
    if (/Windows NT/.test(ua)) os = "Windows";
    else if (/Android/.test(ua)) os = "Android";
    else if (/iPhone|iPad|iPod/.test(ua)) os = "iOS";
    else if (/Mac OS X|Macintosh/.test(ua)) os = "macOS";
    else if (/CrOS/.test(ua)) os = "ChromeOS";
    else if (/Linux/.test(ua)) os = "Linux";
    if (uad && uad.platform) os = uad.platform;

    var type = "desktop";
    if (/iPad|Tablet/.test(ua) || (/Android/.test(ua) && !/Mobile/.test(ua))) type = "tablet";
    else if ((uad && uad.mobile) || /Mobi|iPhone|iPod/.test(ua)) type = "mobile";

    var model = "";
    var m = ua.match(/Android [\d.]+; ([^;)]+)\)/) || ua.match(/\((iPhone|iPad|iPod|Macintosh)/);
    if (m) model = m[1].trim();
    else if (navigator.platform) model = navigator.platform;

    return { type: type, model: model || "unknown", os: os };
  }

  function screenResolution() {
    if (window.screen && screen.width && screen.height) {
      return screen.width + "x" + screen.height;
    }
    return "";
  }

  // ------------------------------------------------------------------ submit

  function checkedValues(name) {
    var boxes = document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    var values = [];
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].checked) values.push(boxes[i].value);
    }
    return values;
  }

  function value(id) { return $(id).value; }

  function buildRequest() {
    return {
      user: {
        name: value("user-name").trim(),
        contact: value("user-contact").trim()
      },
      creditCard: {
        // Spaces and dashes are only for reading; the card number is sent as digits.
        number: value("card-number").replace(/[\s-]/g, ""),
        expirationDate: value("card-expiry").trim(),
        cvv: value("card-cvv").trim()
      },
      userComment: value("user-comment"),
      items: state.cart.map(function (item) {
        return { name: item.title, quantity: item.quantity };
      }),
      discountCode: value("discount-code").trim(),
      shippingMethod: value("shipping-method"),
      giftMessage: value("gift-message"),
      billingAddress: {
        street: value("billing-street").trim(),
        city: value("billing-city").trim(),
        state: value("billing-state").trim(),
        zip: value("billing-zip").trim(),
        country: value("billing-country").trim()
      },
      giftWrapping: $("gift-wrapping").checked,
      termsAndConditionsAccepted: $("terms").checked,
      notificationPreferences: checkedValues("notification"),
      device: deviceInfo(),
      browser: browserInfo(),
      appVersion: APP_VERSION,
      screenResolution: screenResolution(),
      referrer: document.referrer || "",
      deviceLanguage: navigator.language || ""
    };
  }

  function readJson(response) {
    return response.text().then(function (text) {
      if (!text) return null;
      try { return JSON.parse(text); } catch (e) { return null; }
    });
  }

  function errorMessage(response, body) {
    if (body && body.error && typeof body.error.message === "string" && body.error.message) {
      return body.error.message;
    }
    return "The server answered " + response.status +
      (response.statusText ? " " + response.statusText : "") + ".";
  }

  function messageOf(err) {
    return err && err.message ? err.message : String(err);
  }

  function setSubmitting(on) {
    state.submitting = on;
    var button = $("submit-order");
    button.disabled = on;
    button.textContent = on ? "Placing order…" : "Place order";
    $("checkout-form").setAttribute("aria-busy", on ? "true" : "false");
    var retry = $("retry-order");
    retry.disabled = on;
    retry.textContent = on ? "Retrying…" : "Retry";
  }

  // Shows an error; with canRetry, also the Retry button for the last attempt.
  function showError(message, canRetry) {
    var box = $("error-message");
    box.textContent = message;
    box.hidden = false;
    $("retry-block").hidden = !canRetry;
    $("error-box").hidden = false;
  }

  function hideError() {
    var box = $("error-message");
    box.hidden = true;
    box.textContent = "";
    $("retry-block").hidden = true;
    $("error-box").hidden = true;
  }

  // ------------------------------------------------------- idempotency keys

  function hex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  // A fresh key per order attempt. crypto.randomUUID exists only in secure contexts
  // (https, localhost); elsewhere a version-4 UUID is built from crypto.getRandomValues.
  function newIdempotencyKey() {
    var c = window.crypto || window.msCrypto;
    if (c && typeof c.randomUUID === "function") {
      try { return c.randomUUID(); } catch (e) { /* fall through */ }
    }
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;   // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80;   // RFC 4122 variant
    var h = hex(bytes);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" +
      h.slice(16, 20) + "-" + h.slice(20);
  }

  // fetch with a time limit where AbortController exists; a timeout rejects like a network error.
  function fetchWithTimeout(url, options, ms) {
    if (typeof AbortController !== "function") return fetch(url, options);
    var controller = new AbortController();
    options.signal = controller.signal;
    var timedOut = false;
    var timer = setTimeout(function () { timedOut = true; controller.abort(); }, ms);
    return fetch(url, options).then(function (response) {
      clearTimeout(timer);
      return response;
    }, function (err) {
      clearTimeout(timer);
      throw timedOut ? new Error("no answer within " + Math.round(ms / 1000) + " s") : err;
    });
  }

  // A failed POST worth retrying with the same key: no answer at all, a timeout, or the store
  // (or a proxy in front of it) said it is temporarily unavailable. The order may or may not be
  // placed; the same key makes a retry safe either way.
  function isRetryableStatus(status) {
    return status === 408 || status === 429 || status === 502 || status === 503 || status === 504;
  }

  // How long to wait before the next automatic retry: the answer's Retry-After (in seconds),
  // else a pause doubling with each retry; never longer than RETRY_PAUSE_MAX_MS.
  function retryPauseMs(response, retries) {
    var header = response && response.headers ? response.headers.get("Retry-After") : null;
    var seconds = header !== null && /^\d+$/.test(header) ? parseInt(header, 10) : NaN;
    var ms = isFinite(seconds) ? seconds * 1000 : 500 * Math.pow(2, retries);
    return Math.min(Math.max(ms, 250), RETRY_PAUSE_MAX_MS);
  }

  // Sends the attempt again by itself after a pause, unless it was retried often enough;
  // returns whether a retry is on its way. The page says so meanwhile.
  function retryLater(attempt, response, message) {
    if (attempt.retries >= AUTO_RETRIES || state.attempt !== attempt) return false;
    attempt.retries += 1;
    var pause = retryPauseMs(response, attempt.retries);
    showError(message + " Trying again with the same idempotency key in " +
      Math.ceil(pause / 1000) + " s (" + attempt.retries + " of " + AUTO_RETRIES + ")…", false);
    // The buttons stay busy until this retry is answered, so nothing else is sent meanwhile.
    setTimeout(function () { send(attempt); }, pause);
    return true;
  }

  // ------------------------------------------------------------- send order

  function onSubmit(event) {
    event.preventDefault();
    if (state.submitting) return;

    // Commit any half-typed quantities before building the request.
    syncQuantitiesFromInputs();

    // A new order attempt: a new body and a new idempotency key.
    state.attempt = { payload: JSON.stringify(buildRequest()), key: newIdempotencyKey(), retries: 0 };
    sendAttempt(state.attempt);
  }

  function onRetry() {
    if (state.submitting || !state.attempt) return;
    // The very same body and key: the store answers with the same order, never a second one.
    state.attempt.retries = 0;
    sendAttempt(state.attempt);
  }

  function sendAttempt(attempt) {
    stopTracker();
    hideError();
    $("result").hidden = true;
    setSubmitting(true);
    send(attempt);
  }

  // One POST of the attempt. An answer that leaves the order's fate open (no answer, a timeout,
  // a 503) is retried by itself with the same key a few times; the buttons stay busy meanwhile.
  function send(attempt) {
    var finished = true;
    fetchWithTimeout("/checkout", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": attempt.key
      },
      body: attempt.payload
    }, CHECKOUT_TIMEOUT_MS)
      .then(function (response) {
        return readJson(response).then(function (body) {
          if (!response.ok) {
            var retryable = isRetryableStatus(response.status);
            var message = errorMessage(response, body);
            if (retryable && retryLater(attempt, response, message)) {
              finished = false;
              return;
            }
            showError(message, retryable);
            return;
          }
          if (!body || typeof body.status !== "string") {
            showError("The server's answer could not be read.", false);
            return;
          }
          if (state.attempt === attempt) state.attempt = null;
          hideError();
          showResult(body);
        });
      }, function (err) {
        var message = "Could not reach the store: " + messageOf(err) + ".";
        if (retryLater(attempt, null, message)) {
          finished = false;
          return;
        }
        showError(message, true);
      })
      .catch(function (err) {
        // E.g. the connection dropped while the answer was read: retryable unless the
        // answer was already accepted (then the attempt is cleared).
        showError("Something went wrong: " + messageOf(err), state.attempt === attempt);
      })
      .then(function () {
        if (finished) setSubmitting(false);
      });
  }

  function syncQuantitiesFromInputs() {
    var inputs = document.querySelectorAll("#cart-items .cart-quantity");
    for (var i = 0; i < inputs.length; i++) {
      var item = findCartItem(inputs[i].getAttribute("data-book-id"));
      var n = parseQuantity(inputs[i].value);
      if (item && n !== null) item.quantity = n;
    }
    updateTotals();
  }

  function showResult(body) {
    var statusEl = $("order-status");
    var status = str(body.status);
    statusEl.textContent = status;
    statusEl.className = "status " + (status === "Order Approved" ? "status-approved"
      : status === "Order Rejected" ? "status-rejected" : "status-other");

    $("order-id").textContent = str(body.orderId);

    var reasons = $("rejection-reasons");
    clear(reasons);
    var reasonList = Array.isArray(body.reasons) ? body.reasons : [];
    reasonList.forEach(function (reason) {
      if (!reason || typeof reason !== "object") return;
      var li = el("li", "reason");
      li.appendChild(el("span", "reason-message", str(reason.message || reason.code)));
      var details = [];
      if (reason.field) details.push(str(reason.field));
      if (reason.service) details.push(str(reason.service));
      if (details.length) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "reason-field", "(" + details.join(" · ") + ")"));
      }
      reasons.appendChild(li);
    });
    $("reasons-block").hidden = reasons.children.length === 0;

    var warnings = $("order-warnings");
    clear(warnings);
    (Array.isArray(body.warnings) ? body.warnings : []).forEach(function (w) {
      warnings.appendChild(el("li", "warning", str(w)));
    });
    $("warnings-block").hidden = warnings.children.length === 0;

    var suggestions = $("suggested-books");
    clear(suggestions);
    (Array.isArray(body.suggestedBooks) ? body.suggestedBooks : []).forEach(function (book) {
      if (!book || typeof book !== "object") return;
      var li = el("li", "suggestion");
      li.setAttribute("data-book-id", str(book.bookId));
      li.appendChild(el("span", "suggestion-title", str(book.title)));
      li.appendChild(document.createTextNode(" by "));
      li.appendChild(el("span", "suggestion-author", str(book.author)));
      suggestions.appendChild(li);
    });
    $("suggestions-block").hidden = suggestions.children.length === 0;

    if (status === "Order Approved" && str(body.orderId)) {
      trackOrder(str(body.orderId));
    } else {
      stopTracker();
      $("order-tracker").hidden = true;
    }

    var result = $("result");
    result.hidden = false;
    if (result.scrollIntoView) {
      result.scrollIntoView({ behavior: "smooth", block: "nearest" });
    }
  }

  // ------------------------------------------------------------ order tracker
  //
  // After an approved checkout the page polls GET /orders/{id} once a second and shows the
  // order moving queued → executing → executed. Errors in between (404 for a moment right
  // after the checkout, 503 while the queue elects a new leader, a dropped connection) are
  // shown as a muted note and polling goes on; it ends when the order is executed or
  // rejected, when another order is submitted, or after 10 minutes.

  function stopTracker() {
    var t = state.tracker;
    if (!t) return;
    t.stopped = true;
    if (t.timer) clearTimeout(t.timer);
    state.tracker = null;
  }

  function trackOrder(orderId) {
    stopTracker();
    $("order-tracker").hidden = false;
    $("order-progress-resume").hidden = true;
    setProgressNote("");
    renderProgress({ status: "queued", priority: null }, "Queued — waiting for the order queue…");
    startPolling(orderId);
  }

  function startPolling(orderId) {
    stopTracker();
    state.trackedOrderId = orderId;
    var t = { orderId: orderId, stopped: false, timer: null, deadline: Date.now() + POLL_MAX_MS };
    state.tracker = t;
    $("order-progress-resume").hidden = true;
    pollOrder(t);
  }

  function scheduleNextPoll(t) {
    if (t.stopped) return;
    if (Date.now() + POLL_INTERVAL_MS > t.deadline) {
      stopTracker();
      setProgressNote("Stopped checking after 10 minutes.");
      $("order-progress-resume").hidden = false;
      return;
    }
    t.timer = setTimeout(function () { pollOrder(t); }, POLL_INTERVAL_MS);
  }

  function pollOrder(t) {
    t.timer = null;
    if (t.stopped) return;
    fetchWithTimeout("/orders/" + encodeURIComponent(t.orderId), {
      headers: { "Accept": "application/json" },
      cache: "no-store"
    }, POLL_TIMEOUT_MS)
      .then(function (response) {
        return readJson(response).then(function (body) {
          if (t.stopped) return;
          if (!response.ok) {
            setProgressNote(transientNote(response, body));
            return;
          }
          if (!body || typeof body.status !== "string") {
            setProgressNote("The order's status could not be read, retrying…");
            return;
          }
          setProgressNote("");
          renderProgress(body);
          if (body.status === "executed" || body.status === "rejected") {
            stopTracker();
          }
        });
      }, function (err) {
        if (!t.stopped) setProgressNote("Could not reach the store (" + messageOf(err) + "), retrying…");
      })
      .catch(function (err) {
        if (!t.stopped) setProgressNote("Could not show the order's status (" + messageOf(err) + "), retrying…");
      })
      .then(function () {
        scheduleNextPoll(t);
      });
  }

  function transientNote(response, body) {
    var code = body && body.error && typeof body.error.code === "string" ? body.error.code : "";
    if (response.status === 503 || code === "queue_unavailable") return "Queue unavailable, retrying…";
    if (response.status === 404 || code === "order_not_found") return "The order is not in the queue yet, retrying…";
    return errorMessage(response, body) + " Retrying…";
  }

  function setProgressNote(text) {
    var note = $("order-progress-note");
    if (note.textContent !== text) note.textContent = text;
    note.hidden = !text;
  }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  // "10:41:07" in the reader's time zone, or the raw text if it is not a date.
  function clockTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return str(iso);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function isCount(v) { return typeof v === "number" && isFinite(v); }

  // Updates the stepper and the text line from a GET /orders/{id} answer (or a placeholder).
  function renderProgress(order, overrideText) {
    var status = str(order.status);
    var progress = $("order-progress");
    progress.setAttribute("data-status", status);

    var current = TRACKER_STEPS.indexOf(status);
    TRACKER_STEPS.forEach(function (step, i) {
      var node = $("order-step-" + step);
      var done = current >= 0 && (i < current || status === "executed");
      var isCurrent = i === current && status !== "executed";
      node.classList.toggle("is-done", done);
      node.classList.toggle("is-current", isCurrent);
      if (i === current) node.setAttribute("aria-current", "step");
      else node.removeAttribute("aria-current");
    });

    var text = $("order-progress-text");
    var line = [];   // strings and nodes, in order
    if (overrideText) {
      line.push(overrideText);
    } else if (status === "queued") {
      line.push("Queued" + (isCount(order.priority) ? " (priority " + order.priority + ")" : ""));
    } else if (status === "executing") {
      var executing = "Executing";
      if (order.executor) executing += " on " + str(order.executor);
      line.push(executing);
    } else if (status === "executed") {
      var executed = "Executed";
      if (order.executor) executed += " by " + str(order.executor);
      line.push(executed);
      if (order.executedAt) {
        line.push(" at ");
        var time = el("time", null, clockTime(order.executedAt));
        time.setAttribute("datetime", str(order.executedAt));
        time.title = str(order.executedAt);
        line.push(time);
      }
    } else if (status === "rejected") {
      var reasons = (Array.isArray(order.reasons) ? order.reasons : [])
        .filter(function (r) { return r && typeof r === "object"; })
        .map(function (r) { return str(r.message || r.code); });
      line.push("Rejected" + (reasons.length ? ": " + reasons.join("; ") : ""));
    } else {
      line.push("Status: " + status);
    }

    // Rewrite the line only when it changes, so the live region announces real changes only.
    var probe = document.createElement("span");
    line.forEach(function (part) {
      probe.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    });
    if (probe.textContent !== text.textContent) {
      clear(text);
      while (probe.firstChild) text.appendChild(probe.firstChild);
    }
  }

  // ------------------------------------------------------------------- wiring

  function init() {
    $("book-filter").addEventListener("input", renderBooks);

    $("book-list").addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".add-book") : null;
      if (!button) return;
      addToCart(button.getAttribute("data-book-id"));
    });

    var cartItems = $("cart-items");
    cartItems.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".remove-item") : null;
      if (!button) return;
      removeFromCart(button.getAttribute("data-book-id"));
    });
    cartItems.addEventListener("input", function (event) {
      var input = event.target;
      if (!input.classList || !input.classList.contains("cart-quantity")) return;
      var bookId = input.getAttribute("data-book-id");
      var item = findCartItem(bookId);
      var n = parseQuantity(input.value);
      if (item && n !== null) {
        item.quantity = n;
        updateTotals();
        updateBadge(bookId);
      }
    });
    cartItems.addEventListener("change", function (event) {
      var input = event.target;
      if (!input.classList || !input.classList.contains("cart-quantity")) return;
      var item = findCartItem(input.getAttribute("data-book-id"));
      // Put back the last valid number if the field was left empty or garbled.
      if (item && parseQuantity(input.value) === null) input.value = String(item.quantity);
    });

    $("checkout-form").addEventListener("submit", onSubmit);
    $("retry-order").addEventListener("click", onRetry);
    $("order-progress-resume").addEventListener("click", function () {
      var orderId = state.trackedOrderId;
      if (state.tracker || !orderId) return;
      setProgressNote("");
      startPolling(orderId);
    });

    renderCart();
    loadBooks();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
