/// The topology page's picture: services as nodes, caller → callee edges from declared
/// dependencies and from Prometheus traffic, laid out in columns by call depth (callers left of
/// their callees) and drawn as one SVG. Pure: a value from the model, its `svg` a string.
struct DashboardTopology {
    struct Edge {
        var from: String
        var to: String
        var requestsPerSecond: Double?
        var successRate: Double?
        /// Seen by Prometheus (else only declared).
        var observed: Bool
    }

    struct Node {
        var name: String
        var health: String
        var good: Bool
        var column: Int
        var row: Int
    }

    let nodes: [Node]
    let edges: [Edge]

    static let columnWidth = 240, rowHeight = 96, nodeWidth = 168, nodeHeight = 56, margin = 24

    init(model: DashboardModel, traffic: DashboardMetrics.Traffic) {
        var edges: [String: Edge] = [:]
        for edge in model.declaredEdges { edges["\(edge.from)\u{0}\(edge.to)"] = Edge(from: edge.from, to: edge.to, observed: false) }
        for row in traffic.edges {
            edges["\(row.from)\u{0}\(row.to)"] = Edge(
                from: row.from, to: row.to, requestsPerSecond: row.stats.requestsPerSecond, successRate: row.stats.successRate,
                observed: true)
        }
        self.edges = edges.values.sorted { ($0.from, $0.to) < ($1.from, $1.to) }
        var names = Set(model.services.map(\.name))
        for edge in self.edges { names.formUnion([edge.from, edge.to]) }
        // Depth: the longest chain of callers above a service; a cycle stops growing at the count.
        var depth: [String: Int] = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        for _ in 0..<names.count {
            var moved = false
            for edge in self.edges where edge.from != edge.to {
                let wanted = min((depth[edge.from] ?? 0) + 1, names.count)
                if (depth[edge.to] ?? 0) < wanted {
                    depth[edge.to] = wanted
                    moved = true
                }
            }
            if !moved { break }
        }
        var rows: [Int: Int] = [:]
        nodes = names.sorted().map { name in
            let column = depth[name] ?? 0
            let row = rows[column, default: 0]
            rows[column] = row + 1
            let service = model.services.first { $0.name == name }
            let good = service.map { !$0.instances.isEmpty && $0.healthy == $0.instances.count } ?? false
            return Node(name: name, health: service?.healthWords ?? "not registered", good: good, column: column, row: row)
        }
    }

    private func position(_ name: String) -> (x: Int, y: Int)? {
        nodes.first { $0.name == name }.map {
            (Self.margin + $0.column * Self.columnWidth, Self.margin + $0.row * Self.rowHeight)
        }
    }

    var svg: String {
        guard !nodes.isEmpty else { return "<p class=\"empty\">No services yet.</p>" }
        let columns = (nodes.map(\.column).max() ?? 0) + 1
        let rows = (nodes.map(\.row).max() ?? 0) + 1
        let width = 2 * Self.margin + (columns - 1) * Self.columnWidth + Self.nodeWidth
        let height = 2 * Self.margin + (rows - 1) * Self.rowHeight + Self.nodeHeight
        let label = "Topology: \(nodes.count) services, \(edges.count) edges: "
            + edges.map { "\($0.from) calls \($0.to)" }.joined(separator: "; ")
        var out = "<figure class=\"topology\"><svg viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(HTML.escape(label))\">"
        out += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">"
            + "<path d=\"M 0 0 L 10 5 L 0 10 z\" class=\"arrowhead\"/></marker></defs>"
        for edge in edges {
            guard let from = position(edge.from), let to = position(edge.to) else { continue }
            let x1 = from.x + Self.nodeWidth, y1 = from.y + Self.nodeHeight / 2
            let x2 = to.x, y2 = to.y + Self.nodeHeight / 2
            let path: String
            let labelX: Int, labelY: Int
            if x2 > x1 {
                path = "M \(x1) \(y1) L \(x2) \(y2)"
                (labelX, labelY) = ((x1 + x2) / 2, (y1 + y2) / 2 - 6)
            } else {
                // A call back to the left (a cycle): curve below the nodes.
                let bottom = max(from.y, to.y) + Self.nodeHeight + Self.rowHeight / 3
                path = "M \(from.x + Self.nodeWidth / 2) \(from.y + Self.nodeHeight) C \(from.x + Self.nodeWidth / 2) \(bottom) \(to.x + Self.nodeWidth / 2) \(bottom) \(to.x + Self.nodeWidth / 2) \(to.y + Self.nodeHeight)"
                (labelX, labelY) = ((from.x + to.x + Self.nodeWidth) / 2, bottom)
            }
            var text = "declared"
            if let rate = edge.requestsPerSecond {
                text = DashboardMetrics.format(rate, digits: 1) + " req/s"
                if let success = edge.successRate { text += " · " + DashboardMetrics.format(success * 100, digits: 1) + "% ok" }
            }
            out += "<g class=\"edge\(edge.observed ? "" : " declared")\" data-from=\"\(HTML.escape(edge.from))\" data-to=\"\(HTML.escape(edge.to))\">"
                + "<title>\(HTML.escape("\(edge.from) → \(edge.to): \(text)"))</title>"
                + "<path d=\"\(path)\" marker-end=\"url(#arrow)\"/>"
                + "<text x=\"\(labelX)\" y=\"\(labelY)\" text-anchor=\"middle\">\(HTML.escape(text))</text></g>"
        }
        for node in nodes {
            guard let at = position(node.name) else { continue }
            out += "<a href=\"/ui/services/\(HTML.pathSegment(node.name))\" class=\"node \(node.good ? "good" : "bad")\" data-service=\"\(HTML.escape(node.name))\">"
                + "<title>\(HTML.escape("\(node.name): \(node.health)"))</title>"
                + "<rect x=\"\(at.x)\" y=\"\(at.y)\" width=\"\(Self.nodeWidth)\" height=\"\(Self.nodeHeight)\" rx=\"8\"/>"
                + "<text x=\"\(at.x + 12)\" y=\"\(at.y + 23)\" class=\"name\">\(HTML.escape(node.name))</text>"
                + "<text x=\"\(at.x + 12)\" y=\"\(at.y + 43)\" class=\"sub\">\(HTML.escape(node.health))</text></a>"
        }
        return out + "</svg></figure>"
    }
}
