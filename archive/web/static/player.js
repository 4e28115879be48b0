/* The player page: hls.js over the act's playlist, a timeline to click, key moments to
 * seek to. The page's facts come from the JSON in #player-data (no inline script: the
 * console's Content-Security-Policy allows only its own files).
 *
 * Two clocks: the act's timeline (t, seconds from the act's first frame, the pieces end to
 * end, as the server placed them) and the video element's (where hls.js put each
 * fragment once it read its PTS). A fragment's start as hls.js knows it maps one to the
 * other, so a seek lands where the server says a moment is. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("player-data").textContent);
  var video = document.getElementById("player-video");
  var errorBox = document.getElementById("player-error");
  var timeline = document.getElementById("player-timeline");
  var cursor = document.getElementById("player-cursor");
  var positionText = document.getElementById("player-position");
  var wallText = document.getElementById("player-wallclock");
  var pieces = data.pieces;
  var state = { errors: [], hls: null, ready: false };

  function pieceAt(t) {
    for (var i = pieces.length - 1; i >= 0; i--) {
      if (t >= pieces[i].offset) return i;
    }
    return 0;
  }

  function fragments() {
    var h = state.hls;
    if (!h || !h.levels || !h.levels[0] || !h.levels[0].details) return null;
    return h.levels[0].details.fragments;
  }

  /* Where piece i's first frame is on the video element's clock: its video's first PTS
   * once hls.js has read the fragment, until then hls.js's estimate from the playlist. */
  function pieceStart(i) {
    var frags = fragments();
    var f = frags && frags[i];
    if (!f) return pieces[i].offset;
    var v = f.elementaryStreams && f.elementaryStreams.video;
    return v && typeof v.startPTS === "number" ? v.startPTS : f.start;
  }

  /* The video element's time of timeline position t. */
  function elementTime(t) {
    var i = pieceAt(t);
    return pieceStart(i) + (t - pieces[i].offset);
  }

  /* The timeline position of the video element's time. */
  function timelineTime(e) {
    for (var i = pieces.length - 1; i >= 0; i--) {
      if (e >= pieceStart(i) || i === 0) {
        return Math.max(0, Math.min(data.duration, pieces[i].offset + (e - pieceStart(i))));
      }
    }
    return 0;
  }

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60) % 60;
    return Math.floor(s / 3600) + ":" + (m < 10 ? "0" : "") + m + ":" + (s % 60 < 10 ? "0" : "") + (s % 60);
  }

  function wallClock(t) {
    var p = pieces[pieceAt(t)];
    var ms = Date.parse(p.start_utc) + (t - p.offset) * 1000;
    var options = { dateStyle: "short", timeStyle: "long" };
    if (data.tz) options.timeZone = data.tz;
    try {
      return new Date(ms).toLocaleString(data.lang, options);
    } catch (e) {
      return new Date(ms).toISOString();
    }
  }

  function showError(text) {
    errorBox.textContent = data.error_text.replace("{reason}", text);
    errorBox.hidden = false;
    state.errors.push(text);
  }

  /* The server's one line for a failed request (its error page's detail). */
  function explain(url, status) {
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var detail = doc.querySelector(".detail");
        return "HTTP " + status + (detail ? ": " + detail.textContent.trim() : "");
      })
      .catch(function () { return "HTTP " + status; });
  }

  function seek(t) {
    t = Math.min(Math.max(0, t), data.duration);
    video.currentTime = elementTime(t);
    if (video.paused) {
      var played = video.play();
      if (played && played.catch) played.catch(function () {});
    }
  }

  function draw() {
    var width = timeline.clientWidth || 1;
    function at(t) { return (100 * t / (data.duration || 1)) + "%"; }
    pieces.forEach(function (p) {
      var div = document.createElement("div");
      div.className = "piece" + (p.discontinuity ? " restart" : "") + (p.missing ? " missing" : "");
      div.style.left = at(p.offset);
      div.style.width = at(p.duration);
      div.dataset.seq = p.seq;
      timeline.appendChild(div);
    });
    data.marks.forEach(function (m) {
      var div = document.createElement("div");
      div.className = "mark " + m.kind;
      div.style.left = at(m.t);
      div.title = clock(m.t) + " " + m.label;
      timeline.appendChild(div);
    });
    timeline.addEventListener("click", function (ev) {
      var box = timeline.getBoundingClientRect();
      seek((ev.clientX - box.left) / (box.width || width) * data.duration);
    });
    timeline.addEventListener("keydown", function (ev) {
      var now = timelineTime(video.currentTime);
      if (ev.key === "ArrowRight") seek(now + 5);
      else if (ev.key === "ArrowLeft") seek(now - 5);
      else return;
      ev.preventDefault();
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.seek"), function (b) {
      b.addEventListener("click", function () { seek(parseFloat(b.dataset.t)); });
    });
  }

  function update() {
    var t = timelineTime(video.currentTime);
    cursor.style.left = (100 * t / (data.duration || 1)) + "%";
    timeline.setAttribute("aria-valuenow", t.toFixed(1));
    positionText.textContent = clock(t);
    wallText.textContent = wallClock(t);
  }

  video.addEventListener("timeupdate", update);
  video.addEventListener("seeked", update);
  video.addEventListener("error", function () {
    var e = video.error;
    showError(e ? "media error " + e.code + (e.message ? " (" + e.message + ")" : "") : "media error");
  });
  draw();

  if (window.Hls && window.Hls.isSupported()) {
    var noRetry = { maxNumRetry: 1, retryDelayMs: 500, maxRetryDelayMs: 2000 };
    var policy = {
      default: {
        maxTimeToFirstByteMs: 20000,
        maxLoadTimeMs: 120000,
        timeoutRetry: noRetry,
        errorRetry: noRetry,
      },
    };
    var hls = new window.Hls({
      startPosition: data.start,
      enableWorker: true,
      progressive: true,
      maxBufferLength: 30,
      backBufferLength: 90,
      fragLoadPolicy: policy,
      playlistLoadPolicy: policy,
    });
    state.hls = hls;
    hls.on(window.Hls.Events.ERROR, function (_event, d) {
      var status = d.response && d.response.code;
      if (!d.fatal && !(status >= 400)) return;
      var url = (d.frag && d.frag.url) || (d.context && d.context.url) || "";
      if (status >= 400 && url) {
        explain(url, status).then(showError);
      } else {
        showError(d.details + (d.reason ? ": " + d.reason : ""));
      }
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
      state.ready = true;
    });
    /* Start where the page says, then play (hls.js seeks to startPosition too, but may
     * let the element play from 0 first when that fragment holds both). */
    video.addEventListener("loadeddata", function () {
      if (state.started) return;
      state.started = true;
      var target = elementTime(data.start);
      if (Math.abs(video.currentTime - target) > 0.25) video.currentTime = target;
      var played = video.play();
      if (played && played.catch) played.catch(function () {});
    });
    hls.loadSource(data.playlist);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = data.playlist; // Safari plays HLS itself
    video.addEventListener("loadedmetadata", function () {
      state.ready = true;
      video.currentTime = data.start;
      video.play();
    });
  } else {
    showError("this browser has no Media Source Extensions");
  }

  window.bodycamPlayer = {
    data: data,
    state: state,
    video: video,
    seek: seek,
    elementTime: elementTime,
    timelineTime: timelineTime,
  };
})();
