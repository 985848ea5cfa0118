import NIOHPACK
import NIOHTTP2

/// Header rewriting for HTTP/2 exchanges, with the HTTP/1.1 head writer's rules: removed names
/// and replaced names match in any spelling an app framework reads as the same (`HTTPGrammar.
/// equalsAsFieldName`); HTTP/2 names are lowercase, pseudo-headers first.
enum HTTP2Headers {
    /// The request head for the next hop: `path` replaces `:path` (a normalized target), an
    /// added `host` line becomes `:authority`, and a received `host` is dropped when
    /// `:authority` is there (one authority, the one routing saw). One pass: a received block's
    /// pseudo-headers come first (`HTTP2HeaderValidation`).
    static func request(
        _ received: HPACKHeaders, removing removed: [String], adding added: [HTTPHeaderLine], path: String?
    ) -> HPACKHeaders {
        if path == nil, let out = keepingReceived(received, removing: removed, adding: added) { return out }
        var out = HPACKHeaders()
        out.reserveCapacity(received.count + added.count + 1)
        let authority = added.first { $0.name == "host" }?.value
        var hasAuthority = false
        var inPseudo = true
        for (name, value, indexing) in received {
            if inPseudo {
                if name.utf8.first == UInt8(ascii: ":") {
                    switch name {
                    case ":path" where path != nil: out.add(name: name, value: path!)
                    case ":authority":
                        hasAuthority = true
                        out.add(name: name, value: authority ?? value, indexing: indexing)
                    default: out.add(name: name, value: value, indexing: indexing)
                    }
                    continue
                }
                inPseudo = false
                if !hasAuthority, let authority { out.add(name: ":authority", value: authority) }
            }
            if (hasAuthority || authority != nil) && name == "host" { continue }
            if keeps(name, removing: removed, replacing: added) {
                out.add(name: name, value: value, indexing: perRequest(name) ? .nonIndexable : indexing)
            }
        }
        if inPseudo && !hasAuthority, let authority { out.add(name: ":authority", value: authority) }
        for line in added where line.name != "host" {
            let name = lowercased(line.name)
            out.add(name: name, value: line.value, indexing: perRequest(name) ? .nonIndexable : .indexable)
        }
        return out
    }

    /// The usual request, made from a copy of the received block: nothing but regular fields
    /// taken out (`removed`, or replaced by `added`) and `added` after them. nil when more
    /// changes (a `host` or `:authority`, a per-request field received indexed): `request` then
    /// builds the block field by field. A copy keeps the received fields without
    /// `HPACKHeaders.add`, which checks each name again (~200 instructions a field).
    private static func keepingReceived(
        _ received: HPACKHeaders, removing removed: [String], adding added: [HTTPHeaderLine]
    ) -> HPACKHeaders? {
        // The lengths of the names taken out, as bits: most received fields differ in length
        // from all of them, and are kept without a compare.
        var lengths: UInt64 = 0
        for name in removed { lengths |= lengthBit(name) }
        for line in added {
            if line.name == "host" { return nil }
            lengths |= lengthBit(line.name)
        }
        var dropped: [String] = []
        for (name, _, indexing) in received where name.utf8.first != UInt8(ascii: ":") {
            switch name.utf8.count {
            case 4: if name == "host" { return nil }
            case 11, 12: if indexing != .nonIndexable && perRequest(name) { return nil }
            default: break
            }
            if lengths & lengthBit(name) != 0 && !keeps(name, removing: removed, replacing: added) { dropped.append(name) }
        }
        var out = received
        out.reserveCapacity(received.count + added.count)  // the one copy, with room for `added`
        // Every spelling `keeps` drops was recorded as received; `remove` drops each in any case.
        for name in dropped { out.remove(name: name) }
        for line in added {
            let name = lowercased(line.name)
            out.add(name: name, value: line.value, indexing: perRequest(name) ? .nonIndexable : .indexable)
        }
        return out
    }

    /// A bit for the length of `name` (every length from 63 on shares the last).
    private static func lengthBit(_ name: String) -> UInt64 {
        1 << UInt64(min(name.utf8.count, 63))
    }

    /// `name` in lowercase, as HTTP/2 sends it (the names the sidecar adds usually are already).
    static func lowercased(_ name: String) -> String {
        name.utf8.contains { $0 &- UInt8(ascii: "A") < 26 } ? name.lowercased() : name
    }

    /// Fields whose value is new on every request (the hop headers every sidecar sets): sent as
    /// literals without indexing (RFC 7541 §6.2.2). Indexed, each request put two entries into the
    /// next hop's dynamic table that were never matched again, pushing out the ones that are, and
    /// NIOHPACK's encoder searches that table linearly for every field it sends: the table keeps
    /// only fields that repeat, and stays short.
    static func perRequest(_ name: String) -> Bool {
        switch name.utf8.first {
        case UInt8(ascii: "x"): return name == "x-request-id"
        case UInt8(ascii: "t"): return name == "traceparent"
        default: return false
        }
    }

    /// Whether the stream `id` of an upstream connection indexes its per-request fields once: the
    /// first stream of the connection and every 1024th after. A literal without indexing can
    /// still name its field by index (RFC 7541 §6.2.2) once the name is in the dynamic table; so
    /// one indexed entry per name lets every later request send `x-request-id` and `traceparent`
    /// as an index and a value, where each name was Huffman-coded and decoded in full (NIOHPACK's
    /// coder costs ~140 instructions a byte). Again every 1024 streams, in case the entry was
    /// pushed out: two entries that never match per 1024 requests do not churn the table.
    static func indexesNames(onStream id: HTTP2StreamID) -> Bool {
        Int(id) & 2047 == 1
    }

    /// `headers` with its per-request fields indexed (`indexesNames(onStream:)`).
    static func indexingPerRequestFields(_ headers: HPACKHeaders) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(headers.count)
        for (name, value, indexing) in headers {
            out.add(name: name, value: value, indexing: perRequest(name) ? .indexable : indexing)
        }
        return out
    }

    /// A response head with a route's header rewrites (`:status` stays first).
    static func response(_ received: HPACKHeaders, removing removed: [String], adding added: [HTTPHeaderLine]) -> HPACKHeaders {
        if removed.isEmpty && added.isEmpty { return received }
        var out = HPACKHeaders()
        out.reserveCapacity(received.count + added.count)
        for (name, value, indexing) in received
        where name.utf8.first == UInt8(ascii: ":") || keeps(name, removing: removed, replacing: added) {
            out.add(name: name, value: value, indexing: indexing)
        }
        for line in added { out.add(name: lowercased(line.name), value: line.value) }
        return out
    }

    /// Trailers (or any header block) without `names`, in any spelling.
    static func removing(_ names: [String], from headers: HPACKHeaders) -> HPACKHeaders {
        guard headers.contains(where: { field in names.contains { matches(field.name, $0) } }) else { return headers }
        var out = HPACKHeaders()
        for (name, value, indexing) in headers where keeps(name, removing: names, replacing: []) {
            out.add(name: name, value: value, indexing: indexing)
        }
        return out
    }

    private static func keeps(_ name: String, removing removed: [String], replacing added: [HTTPHeaderLine]) -> Bool {
        var name = name
        return name.withUTF8 { bytes in
            let name = UnsafeRawBufferPointer(bytes)
            for other in removed where HTTPGrammar.equalsAsFieldName(name, other) { return false }
            for line in added where HTTPGrammar.equalsAsFieldName(name, line.name) { return false }
            return true
        }
    }

    static func matches(_ name: String, _ other: String) -> Bool {
        var name = name
        return name.withUTF8 { HTTPGrammar.equalsAsFieldName(UnsafeRawBufferPointer($0), other) }
    }
}
