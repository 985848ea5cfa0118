/// Where the configuration in use came from, as `/ready` reports it (`"source"`): the config
/// file (static mode), the control plane (dynamic mode, connected at least once since the
/// start), or the state a dynamic sidecar saved before it was restarted while no control plane
/// answered (fail-static: serving what it last knew to be good).
public enum ConfigSource: String, Sendable, Equatable {
    case file
    case live
    case lastKnownGood = "last-known-good"
}
