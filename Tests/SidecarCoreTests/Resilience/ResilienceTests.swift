import Testing

/// The parent of every resilience suite, so `swift test --filter Resilience` selects them all.
@Suite struct ResilienceTests {}
