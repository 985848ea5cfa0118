/// The framing and connection facts of one head: everything a proxy needs to decide where
/// the message ends and what happens to the connection after it.
public struct HTTPFraming: Sendable, Hashable {
    /// Where the body ends.
    public var body: HTTPBodyFraming
    /// Whether the connection may carry another message after this one (HTTP/1.1 default,
    /// `Connection: close`, HTTP/1.0 `Connection: keep-alive`, read-until-close bodies).
    public var keepAlive: Bool
    /// The request carries `Expect: 100-continue` (HTTP/1.1 only, RFC 9110 §10.1.1).
    public var expectsContinue: Bool
    /// `Upgrade` present together with `Connection: upgrade` on an HTTP/1.1 message.
    public var upgrade: Bool

    public init(body: HTTPBodyFraming, keepAlive: Bool, expectsContinue: Bool = false, upgrade: Bool = false) {
        self.body = body
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
        self.upgrade = upgrade
    }
}
