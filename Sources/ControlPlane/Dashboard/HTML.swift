/// Builds the dashboard's HTML by hand: every value from the mesh goes through `escape`, so a
/// service name or a label can never become markup. The one place text turns into HTML.
enum HTML {
    /// Text and attribute values: `& < > " '` become entities.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// A path segment for a link (`/ui/services/<name>`).
    static func pathSegment(_ text: String) -> String {
        let allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
        var out = ""
        for byte in text.utf8 {
            if allowed.utf8.contains(byte) {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// A health word in a badge: the word carries the meaning, the colour only repeats it.
    static func badge(_ word: String, good: Bool) -> String {
        "<span class=\"badge \(good ? "good" : "bad")\">\(escape(word))</span>"
    }

    /// A table with a caption for screen readers; `rows` are already-escaped cells.
    static func table(caption: String, headers: [String], rows: [[String]], empty: String) -> String {
        guard !rows.isEmpty else { return "<p class=\"empty\">\(escape(empty))</p>" }
        var out = "<div class=\"scroll\"><table><caption>\(escape(caption))</caption><thead><tr>"
        for header in headers { out += "<th scope=\"col\">\(escape(header))</th>" }
        out += "</tr></thead><tbody>"
        for row in rows {
            out += "<tr>"
            for (index, cell) in row.enumerated() {
                out += index == 0 ? "<th scope=\"row\">\(cell)</th>" : "<td data-label=\"\(escape(headers[index]))\">\(cell)</td>"
            }
            out += "</tr>"
        }
        return out + "</tbody></table></div>"
    }
}
