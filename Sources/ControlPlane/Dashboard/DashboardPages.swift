import Foundation
import MeshAPI
import SidecarCore

/// The dashboard's pages as HTML strings: one function per page over a `DashboardModel`, all in
/// one layout (skip link, navigation, sign-out form, `<main>` holding the live part). No
/// inline script or style: behaviour and looks come from `/ui/assets/`. Every value from the
/// mesh goes through `HTML.escape`; health is always a word, colour only repeats it.
enum DashboardPages {
    enum Section: String, CaseIterable {
        case overview = "Overview", proxies = "Proxies", topology = "Topology", resources = "Resources"

        var path: String {
            switch self {
            case .overview: "/ui/"
            case .proxies: "/ui/proxies"
            case .topology: "/ui/topology"
            case .resources: "/ui/resources"
            }
        }
    }

    static func layout(title: String, section: Section?, model: DashboardModel?, body: String) -> String {
        var nav = ""
        if model != nil {
            nav = "<nav aria-label=\"Dashboard pages\"><ul>"
            for item in Section.allCases {
                let current = item == section ? " aria-current=\"page\"" : ""
                nav += "<li><a href=\"\(item.path)\"\(current)>\(item.rawValue)</a></li>"
            }
            nav += "</ul></nav><form class=\"signout\" method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Sign out</button></form>"
        }
        let generation = model.map { " data-generation=\"\($0.generation)\"" } ?? ""
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(HTML.escape(title)) · mesh dashboard</title>
            <link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml">
            <link rel="stylesheet" href="/ui/assets/dashboard.css">
            <script src="/ui/assets/dashboard.js" defer></script>
            </head><body>
            <a class="skip" href="#main">Skip to content</a>
            <header class="top"><a class="brand" href="/ui/">mesh</a>\(nav)</header>
            <main id="main" tabindex="-1"\(generation)>
            <h1>\(HTML.escape(title))</h1>
            \(body)
            </main></body></html>

            """
    }

    static func liveLine(_ model: DashboardModel) -> String {
        "<p class=\"live\" role=\"status\">Mesh version <strong data-testid=\"mesh-version\">\(HTML.escape(model.version))</strong> · updates live</p>"
    }

    // MARK: Sign-in

    static func login(message: String?) -> String {
        let error = message.map { "<p class=\"error\" role=\"alert\" id=\"login-error\">\(HTML.escape($0))</p>" } ?? ""
        return layout(title: "Sign in", section: nil, model: nil, body: """
            \(error)
            <form class="login" method="post" action="/ui/login">
            <label for="token">Admin token</label>
            <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
            <p class="hint">The control plane's <code>admin.token</code> (in its data directory).</p>
            <button type="submit">Sign in</button>
            </form>
            """)
    }

    // MARK: Overview

    static func overview(_ model: DashboardModel, certificateExpiry: (value: String, note: String)) -> String {
        let healthyServices = model.services.filter { !$0.instances.isEmpty && $0.healthy == $0.instances.count }.count
        let cards = [
            ("Services", "\(model.services.count)", "\(healthyServices) with every instance healthy"),
            ("Proxies", "\(model.proxies.count)", model.staleProxies == 0 ? "all up to date" : "\(model.staleProxies) stale"),
            ("Rejected snapshots", "\(model.rejectingProxies)", model.rejectingProxies == 0 ? "none" : "see Proxies"),
            ("Soonest certificate expiry", certificateExpiry.value, certificateExpiry.note),
            ("Trust domain", model.trustDomain, model.prometheus.map { "metrics from \($0)" } ?? "no Prometheus configured"),
        ]
        var body = liveLine(model) + "<ul class=\"cards\">"
        for (label, value, note) in cards {
            body += "<li class=\"card\"><span class=\"label\">\(HTML.escape(label))</span>"
                + "<span class=\"value\">\(HTML.escape(value))</span><span class=\"note\">\(HTML.escape(note))</span></li>"
        }
        body += "</ul><h2>Services</h2>"
        let rows = model.services.map { service -> [String] in
            let allHealthy = !service.instances.isEmpty && service.healthy == service.instances.count
            return [
                "<a href=\"/ui/services/\(HTML.pathSegment(service.name))\">\(HTML.escape(service.name))</a>",
                "<span data-testid=\"instances\">\(service.healthy)/\(service.instances.count)</span> "
                    + HTML.badge(service.healthWords, good: allHealthy),
                "\(service.proxies)",
                HTML.escape(service.calls.joined(separator: ", ")),
                HTML.escape(service.kinds.map(\.rawValue).joined(separator: ", ")),
            ]
        }
        body += HTML.table(
            caption: "Services, their healthy and total instances", headers: ["Service", "Instances (healthy/total)", "Proxies", "Calls", "Resources"],
            rows: rows, empty: "No services yet: apply resources or start a sidecar.")
        return layout(title: "Overview", section: .overview, model: model, body: body)
    }

    // MARK: Proxies

    static func proxies(_ model: DashboardModel, now: Double = Date().timeIntervalSince1970) -> String {
        let rows = model.proxies.map { proxy -> [String] in
            // Words to read, the exact time for machines (and as the element's title).
            let expiry = proxy.certificateExpiresAt.map { notAfter in
                let at = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(notAfter)))
                return "<time datetime=\"\(at)\" title=\"\(at)\">\(HTML.escape(DashboardMetrics.timeLeft(until: Double(notAfter), now: now)))</time>"
            }
            let rejected = proxy.rejectedVersion.map { "version \(HTML.escape($0)): \(HTML.escape(proxy.rejectedReason ?? ""))" } ?? "none"
            return [
                HTML.escape(proxy.name),
                "<a href=\"/ui/services/\(HTML.pathSegment(proxy.service))\">\(HTML.escape(proxy.service))</a>",
                HTML.escape("\(proxy.address):\(proxy.port)"),
                HTML.badge(proxy.health, good: proxy.health == "healthy"),
                "<span data-testid=\"applied\">\(HTML.escape(proxy.appliedVersion ?? "none"))</span>",
                "<span data-testid=\"current\">\(HTML.escape(proxy.currentVersion))</span>",
                HTML.badge(proxy.stale ? "stale" : "up to date", good: !proxy.stale),
                proxy.rejectedVersion == nil ? rejected : HTML.badge("rejected", good: false) + " " + rejected,
                "<span data-testid=\"certificate-expiry\">\(expiry ?? "not reported")</span>",
                "\(Int(proxy.lastSeenSecondsAgo.rounded())) s ago",
            ]
        }
        let body = liveLine(model) + HTML.table(
            caption: "Every registered proxy, the snapshot version it applied and the current one, and when its certificate expires",
            headers: [
                "Proxy", "Service", "Address", "Health", "Applied", "Current", "Status", "Rejected snapshot", "Certificate expires",
                "Last seen",
            ],
            rows: rows, empty: "No proxy is registered.")
        return layout(title: "Proxies", section: .proxies, model: model, body: body)
    }

    // MARK: Service

    static func service(_ model: DashboardModel, name: String, charts: DashboardMetrics.Charts) -> String {
        guard let service = model.services.first(where: { $0.name == name }) else { return notFound(model, what: name) }
        var body = liveLine(model)
        body += "<p>" + HTML.badge(service.healthWords, good: !service.instances.isEmpty && service.healthy == service.instances.count) + "</p>"
        let callers = model.declaredEdges.filter { $0.to == name }.map(\.from)
        body += "<dl class=\"facts\"><dt>Calls</dt><dd>\(links(service.calls))</dd><dt>Called by</dt><dd>\(links(callers))</dd></dl>"
        body += "<h2>Instances</h2>"
        body += HTML.table(
            caption: "Instances of \(name)", headers: ["Instance", "Address", "Labels", "Health"],
            rows: service.instances.map { instance in
                [
                    HTML.escape(instance.name), HTML.escape("\(instance.address):\(instance.port)"),
                    HTML.escape(instance.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")),
                    HTML.badge(instance.health.rawValue, good: instance.health == .healthy),
                ]
            }, empty: "No instances.")
        body += "<h2>Golden metrics</h2>" + charts.html
        body += "<h2>Policy</h2>"
        let policy = model.resources.filter { $0.service == name && [.route, .trafficPolicy, .authorizationPolicy].contains($0.kind) }
        if policy.isEmpty {
            body += "<p class=\"empty\">No Route, TrafficPolicy or AuthorizationPolicy: the defaults apply.</p>"
        }
        for resource in policy {
            body += "<h3>\(HTML.escape(resource.kind.rawValue)) \(HTML.escape(resource.name))</h3>"
                + "<pre tabindex=\"0\"><code>\(HTML.escape(resource.yaml))</code></pre>"
        }
        return layout(title: "Service \(name)", section: nil, model: model, body: body)
    }

    static func links(_ services: [String]) -> String {
        guard !services.isEmpty else { return "none declared" }
        return services.map { "<a href=\"/ui/services/\(HTML.pathSegment($0))\">\(HTML.escape($0))</a>" }.joined(separator: ", ")
    }

    // MARK: Resources

    static func resources(_ model: DashboardModel) -> String {
        var body = liveLine(model)
        body += "<nav class=\"kinds\" aria-label=\"Kinds\"><ul>"
        for kind in ResourceKind.allCases {
            let count = model.resources.filter { $0.kind == kind }.count
            body += "<li><a href=\"#kind-\(kind.rawValue)\">\(kind.rawValue) (\(count))</a></li>"
        }
        body += "</ul></nav>"
        for kind in ResourceKind.allCases {
            let resources = model.resources.filter { $0.kind == kind }
            body += "<section id=\"kind-\(kind.rawValue)\"><h2>\(kind.rawValue)</h2>"
            if resources.isEmpty { body += "<p class=\"empty\">None.</p>" }
            for resource in resources {
                body += "<details><summary>\(HTML.escape(resource.name))</summary>"
                    + "<pre tabindex=\"0\"><code>\(HTML.escape(resource.yaml))</code></pre></details>"
            }
            body += "</section>"
        }
        return layout(title: "Resources", section: .resources, model: model, body: body)
    }

    // MARK: Topology

    static func topology(_ model: DashboardModel, traffic: DashboardMetrics.Traffic) -> String {
        let topology = DashboardTopology(model: model, traffic: traffic)
        var body = liveLine(model)
        body += "<p>\(HTML.escape(traffic.note))</p>"
        body += topology.svg
        body += "<h2>Edges</h2>"
        body += HTML.table(
            caption: "Caller to callee edges", headers: ["Caller", "Callee", "Requests/s", "Success rate", "Source"],
            rows: topology.edges.map { edge in
                [
                    HTML.escape(edge.from), HTML.escape(edge.to),
                    edge.requestsPerSecond.map { DashboardMetrics.format($0, digits: 2) } ?? "-",
                    edge.successRate.map { DashboardMetrics.format($0 * 100, digits: 1) + "%" } ?? "-",
                    edge.observed ? "Prometheus" : "declared dependency",
                ]
            }, empty: "No edges: no sidecar declared dependencies and Prometheus saw no traffic.")
        return layout(title: "Topology", section: .topology, model: model, body: body)
    }

    static func notFound(_ model: DashboardModel, what: String) -> String {
        layout(title: "Not found", section: nil, model: model, body: "<p>No \(HTML.escape(what)). <a href=\"/ui/\">Back to the overview</a>.</p>")
    }
}
