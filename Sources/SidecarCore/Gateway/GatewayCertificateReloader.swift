import Logging
import ServiceLifecycle
import UnixSignals

/// A dynamic gateway's SIGHUP: its HTTPS listener's certificate files are read again (the
/// control plane follows the rest). Static mode needs none: its SIGHUP reloads the whole file,
/// certificates included (`ConfigReloader`). A file that does not load is logged and the
/// running certificates stay.
final class GatewayCertificateReloader: Service, Sendable {
    let applier: ConfigApplier
    let logger: Logger

    init(applier: ConfigApplier, logger: Logger) {
        self.applier = applier
        self.logger = logger
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            do {
                try applier.reloadGatewayCertificates()
                logger.info("gateway certificates reloaded")
            } catch {
                logger.error("reload refused, keeping the running certificates: \(error)")
            }
        }
    }
}
