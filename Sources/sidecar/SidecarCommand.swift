import ArgumentParser
import Logging
import NIOCore
import SidecarCore
import SidecarDiscovery

/// `sidecar`: the per-service proxy. Argument parsing and wiring only (started by main.swift).
struct SidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "The mesh sidecar: mTLS, routing and policy beside one service instance.",
        usage: """
            sidecar --config <file> [<run options>]   (the same as `sidecar run --config <file>`)
            sidecar validate --config <file>
            sidecar iptables --apply|--dry-run|--cleanup --proxy-uid UID …   (transparent interception)
            sidecar run --help                        (lists the run options)
            """,
        discussion: """
            The local app sends plain HTTP to the outbound port (as a proxy, or with the service as Host); \
            other sidecars reach this one over mTLS on the inbound port.

            --config <file> is the sidecar's YAML config: its service, listeners, certificates (static \
            mode) or control plane (dynamic mode) and resources. Every key, with its type, default and an \
            example, is in docs/configuration.md.

            Environment: MESH_TLS_RECORD_LAYER=openssl keeps OpenSSL's record layer for TLS 1.3 \
            application data (by default the mesh's own protects AES-GCM connections after OpenSSL's \
            handshake; README, "TLS between sidecars").
            """,
        version: MeshVersion.current,
        subcommands: [Run.self, Validate.self, IptablesCommand.self],
        defaultSubcommand: Run.self
    )

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run", abstract: "Run the sidecar (the default when no subcommand is given).")

        @Option(name: .long, help: "The sidecar config file (YAML).")
        var config: String

        @Option(name: .long, help: "Event loop threads; defaults to one per core.")
        var workers: Int?

        @Option(name: .long, help: "On SIGTERM, how long in-flight requests may finish (e.g. 30s, 500ms).")
        var drainTimeout: String = "30s"

        @Option(name: .long, help: "JSON access log on stdout: on or off.")
        var accessLog: String = "on"

        @Option(name: .long, help: "Operational log lines on stderr: json (one object per line) or text.")
        var logFormat: String = "json"

        @Option(name: .long, help: "The least severe operational log level: trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        @Option(name: .long, help: "A client must send a whole request head within this time, else 408 (e.g. 10s).")
        var requestHeadTimeout: String = "10s"

        @Option(name: .long, help: "A request body may pause at most this long between bytes, else 408 and close (e.g. 30s).")
        var requestBodyTimeout: String = "30s"

        @Option(name: .long, help: "Close keep-alive connections idle this long (e.g. 1h).")
        var idleTimeout: String = "1h"

        @Argument(parsing: .postTerminator, help: ArgumentHelp(
            "Supervisor mode: after --, the app to run beside the sidecar (started once ready, gets SIGTERM/SIGINT; its exit status is the sidecar's).",
            valueName: "command"))
        var appCommand: [String] = []

        mutating func run() async throws {
            switch SidecarLogging.parse(format: logFormat, level: logLevel) {
            case .success(let (format, level)): SidecarLogging.bootstrap(format, level: level)
            case .failure(let error): throw ValidationError(error.description)
            }
            guard let drain = MeshDuration(parsing: drainTimeout) else {
                throw ValidationError("--drain-timeout: \"\(drainTimeout)\" is not a duration (use 30s, 500ms)")
            }
            guard let headTimeout = MeshDuration(parsing: requestHeadTimeout) else {
                throw ValidationError("--request-head-timeout: \"\(requestHeadTimeout)\" is not a duration (use 10s)")
            }
            guard let bodyTimeout = MeshDuration(parsing: requestBodyTimeout), bodyTimeout.timeAmount > .zero else {
                throw ValidationError("--request-body-timeout: \"\(requestBodyTimeout)\" is not a positive duration (use 30s)")
            }
            guard let idle = MeshDuration(parsing: idleTimeout) else {
                throw ValidationError("--idle-timeout: \"\(idleTimeout)\" is not a duration (use 1h)")
            }
            guard accessLog == "on" || accessLog == "off" else {
                throw ValidationError("--access-log: use on or off")
            }
            if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
            let options = Sidecar.Options(
                workers: workers ?? System.coreCount, drainTimeout: drain.timeAmount, accessLog: accessLog == "on",
                requestHeadTimeout: headTimeout.timeAmount, requestBodyTimeout: bodyTimeout.timeAmount,
                idleTimeout: idle.timeAmount, appCommand: appCommand)
            do {
                // Supervisor mode: the app's exit status is the sidecar's.
                let sidecar = Sidecar(configPath: config, options: options, controlPlane: ControlPlaneSession.connect)
                if let status = try await sidecar.run(), status != 0 { throw ExitCode(status) }
            } catch let exit as ExitCode {
                throw exit
            } catch let error as ConfigError {
                FileHandleError.print(error.description)
                throw ExitCode(2)
            } catch let error as Sidecar.StartupError {
                FileHandleError.print("sidecar: \(error.description)")
                throw ExitCode(2)
            } catch let error as TLSConfigurationError {
                FileHandleError.print("sidecar: \(error.description)")
                throw ExitCode(2)
            } catch {
                // A listener that cannot bind (address in use), or another service that failed.
                FileHandleError.print("sidecar: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a sidecar config file; print every error with its line and exit non-zero.")

        @Option(name: .long, help: "The sidecar config file (YAML).")
        var config: String

        func run() throws {
            do {
                let configuration = try SidecarConfiguration.load(contentsOf: config)
                if configuration.controlPlane != nil {
                    // The certificate and resources come from the control plane at run time.
                    _ = try ControlPlaneSession.credentials(for: configuration)
                    print("\(config): ok (service \(configuration.service), dynamic mode: \(configuration.controlPlane!.address))")
                } else {
                    _ = try ConfigApplier.prepare(configuration)
                    print("\(config): ok (service \(configuration.service), \(configuration.resources.count) resources)")
                }
            } catch let error as ConfigError {
                FileHandleError.print(error.description)
                throw ExitCode(1)
            } catch {
                FileHandleError.print("\(config): \(error)")
                throw ExitCode(1)
            }
        }
    }
}

enum FileHandleError {
    static func print(_ text: String) {
        var stream = StandardError()
        Swift.print(text, to: &stream)
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
