/// The dashboard's static files, embedded in the binary (no CDN, works offline): one style
/// sheet, one small script (live updates by long poll), one icon. Served under `/ui/assets/`
/// without a session, like any login page's style sheet; they hold nothing about the mesh.
enum DashboardAssets {
    struct Asset {
        var contentType: String
        var body: String
    }

    static func named(_ name: String) -> Asset? {
        switch name {
        case "dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: css)
        case "dashboard.js": Asset(contentType: "text/javascript; charset=utf-8", body: javaScript)
        case "favicon.svg": Asset(contentType: "image/svg+xml", body: favicon)
        default: nil
        }
    }

    static let favicon = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="4" cy="8" r="3" fill="#2563eb"/>\
        <circle cx="12" cy="4" r="3" fill="#2563eb"/><circle cx="12" cy="12" r="3" fill="#2563eb"/></svg>
        """

    /// Live pages: `<main data-generation=G>` asks `/ui/events?after=G`, which answers when
    /// the mesh changed (or after its timeout); on a change the page's `<main>` is fetched
    /// again and swapped in place, keeping the scroll position and no reload. A 401 means the
    /// session ended: back to sign-in.
    static let javaScript = """
        "use strict";
        (function () {
          var main = document.querySelector("main[data-generation]");
          if (!main || !window.fetch || !window.AbortController) { return; }
          var generation = main.getAttribute("data-generation");
          // Leaving the page ends its poll at once: a poll left open would hold one of the
          // browser's few connections to this host until the server's timeout.
          var leaving = false;
          var controller = new AbortController();
          window.addEventListener("pagehide", function () { leaving = true; controller.abort(); });
          function refresh() {
            return fetch(location.pathname, { credentials: "same-origin", cache: "no-store" })
              .then(function (response) { return response.text(); })
              .then(function (html) {
                var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main[data-generation]");
                if (!fresh) { return; }
                var focused = document.activeElement && document.activeElement.id;
                main.replaceWith(fresh);
                main = fresh;
                generation = fresh.getAttribute("data-generation");
                if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
              });
          }
          function poll() {
            if (leaving) { return; }
            fetch("/ui/events?after=" + encodeURIComponent(generation),
                  { credentials: "same-origin", cache: "no-store", signal: controller.signal })
              .then(function (response) {
                if (response.status === 401) { location.assign("/ui/login"); return null; }
                return response.ok ? response.json() : null;
              })
              .then(function (event) {
                if (event && String(event.generation) !== generation) { return refresh(); }
              })
              .then(poll, function () { if (!leaving) { setTimeout(poll, 1000); } });
          }
          poll();
        })();

        """

    static let css = """
        :root { --fg: #111827; --muted: #4b5563; --bg: #f9fafb; --card: #ffffff; --line: #d1d5db;
          --accent: #1d4ed8; --good: #166534; --good-bg: #dcfce7; --bad: #991b1b; --bad-bg: #fee2e2; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
        a { color: var(--accent); }
        a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible, pre:focus-visible, main:focus-visible {
          outline: 3px solid #f59e0b; outline-offset: 2px; }
        .skip { position: absolute; left: -999px; top: 0; background: var(--card); padding: .5rem 1rem; }
        .skip:focus { left: .5rem; z-index: 10; }
        header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .75rem 1.5rem;
          background: #0f172a; color: #fff; }
        header.top a { color: #fff; }
        .brand { font-weight: 700; font-size: 1.2rem; text-decoration: none; }
        header nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
        header nav a { text-decoration: none; padding: .25rem .1rem; border-bottom: 2px solid transparent; }
        header nav a[aria-current="page"] { border-bottom-color: #93c5fd; font-weight: 600; }
        .signout { margin-left: auto; }
        button { font: inherit; padding: .4rem 1rem; border-radius: 6px; border: 1px solid var(--line); background: var(--card);
          color: var(--fg); cursor: pointer; }
        header button { background: transparent; color: #fff; border-color: #64748b; }
        main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
        h1 { font-size: 1.6rem; margin: .5rem 0; }
        h2 { font-size: 1.25rem; margin-top: 2rem; }
        .live { color: var(--muted); margin: 0 0 1rem; }
        .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: .75rem; list-style: none; padding: 0; }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; display: flex; flex-direction: column; }
        .card .label { color: var(--muted); font-size: .9rem; }
        .card .value { font-size: 1.6rem; font-weight: 700; overflow-wrap: anywhere; }
        .card .note { color: var(--muted); font-size: .9rem; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
        caption { text-align: left; color: var(--muted); padding: .25rem 0; }
        th, td { text-align: left; padding: .5rem .75rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        thead th { background: #f3f4f6; font-size: .9rem; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .85rem; font-weight: 600; }
        .badge.good { color: var(--good); background: var(--good-bg); }
        .badge.bad { color: var(--bad); background: var(--bad-bg); }
        .badge.good::before { content: "\\2713\\00a0"; }
        .badge.bad::before { content: "\\2717\\00a0"; }
        .empty, .hint { color: var(--muted); }
        .error { color: var(--bad); background: var(--bad-bg); padding: .5rem 1rem; border-radius: 6px; }
        form.login { display: flex; flex-direction: column; gap: .5rem; max-width: 360px; }
        form.login input { font: inherit; padding: .5rem; border: 1px solid var(--line); border-radius: 6px; }
        form.login button { align-self: flex-start; background: var(--accent); color: #fff; border-color: var(--accent); }
        pre { background: #0f172a; color: #e5e7eb; padding: 1rem; border-radius: 6px; overflow-x: auto; font-size: .9rem; }
        details { background: var(--card); border: 1px solid var(--line); border-radius: 6px; margin: .5rem 0; padding: .25rem .75rem; }
        summary { cursor: pointer; font-weight: 600; }
        .kinds ul { display: flex; flex-wrap: wrap; gap: .5rem 1rem; list-style: none; padding: 0; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
        dl.facts dt { color: var(--muted); }
        dl.facts dd { margin: 0; }
        figure { margin: 1rem 0; }
        .topology svg, .chart svg { width: 100%; height: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
        .topology svg { max-height: 70vh; }
        .node rect { fill: #eff6ff; stroke: var(--accent); stroke-width: 2; }
        .node.bad rect { fill: var(--bad-bg); stroke: var(--bad); stroke-dasharray: 6 3; }
        .node text.name { font-weight: 700; fill: var(--fg); font-size: 16px; }
        .node text.sub { fill: var(--muted); font-size: 13px; }
        .node:focus-visible rect { stroke: #f59e0b; stroke-width: 4; }
        .edge path { fill: none; stroke: #475569; stroke-width: 2; }
        .edge.declared path { stroke-dasharray: 6 4; }
        .edge text { font-size: 12px; fill: var(--muted); }
        .arrowhead { fill: #475569; }
        .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; }
        .chart .axis { stroke: var(--line); }
        .chart .tick { font-size: 11px; fill: var(--muted); }
        .chart .series { fill: none; stroke: var(--accent); stroke-width: 2; }
        @media (max-width: 640px) {
          header.top { padding: .5rem 1rem; }
          main { padding: .75rem 1rem 2rem; }
          .signout { margin-left: 0; }
          h1 { font-size: 1.35rem; }
          .card { padding: .75rem; }
          .card .value { font-size: 1.2rem; }
          /* Tables become one card per row, each cell led by its column's name. */
          table, caption, tbody, tr, th, td { display: block; width: 100%; }
          caption { padding: .25rem .75rem; }
          thead { position: absolute; left: -9999px; }
          tr { border-bottom: 2px solid var(--line); padding: .25rem 0; }
          th, td { border: 0; padding: .2rem .75rem; }
          td::before { content: attr(data-label) ": "; font-weight: 600; color: var(--muted); }
        }

        """
}
