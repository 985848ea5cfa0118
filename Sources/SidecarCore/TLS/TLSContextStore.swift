import NIOConcurrencyHelpers

/// Holds the TLS context a listener uses for new connections, swappable at run time for
/// certificate rotation: a new connection takes `current`; open connections keep the context
/// (and so the certificate) they started with. Read once per accepted connection.
public final class TLSContextStore: Sendable {
    private let box: NIOLockedValueBox<TLSContext>

    public init(_ context: TLSContext) {
        self.box = NIOLockedValueBox(context)
    }

    public var current: TLSContext { box.withLockedValue { $0 } }

    /// Makes `context` the one new connections use.
    public func replace(with context: TLSContext) {
        box.withLockedValue { $0 = context }
    }
}
