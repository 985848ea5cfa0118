#!/usr/bin/env bash
# Mutation sampling over the decisions the mesh must get right (issue 19): each curated mutant
# is a one-line change to one decision, applied to the working tree, built, tested, and reverted
# byte for byte. A mutant some test fails on is "killed"; one every test passes with "survived"
# (a gap in the tests). Not run by CI (too slow): run it before resolving an issue that adds a
# decision, add that decision's mutant here, and say the result.
#
#   scripts/mutants.sh                  every mutant, each against its own test filter
#   scripts/mutants.sh authz-wildcard   only the mutants named
#   scripts/mutants.sh --full ...       each against the whole suite instead of its filter
#   scripts/mutants.sh --list           the mutants, their files and filters
#
# Builds and test runs take the shared build lock (MESH_BUILD_LOCK, default
# /tmp/mesh-build.lock), one command per lock (so do not run the script itself under flock).
# It edits this working tree: run no build or test of your own here meanwhile. A mutant whose
# line is no longer in its file is reported "stale" (the code moved: update the mutant), one
# that does not compile "invalid". The file is restored on exit, on ^C too; if the script is
# killed outright, `git diff` shows the mutant left behind. Exit status: 1 when a mutant
# survived, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."

lock="${MESH_BUILD_LOCK:-/tmp/mesh-build.lock}"
# Seconds a test run may take. A mutant that crashes the test process has been seen to leave
# `swift test` hanging while it holds the shared lock, so the bound is short; such a run counts
# as killed.
per_run_limit="${MUTANT_TEST_TIMEOUT:-}"
logs=".build/mutants"

ids=() files=() filters=() froms=() tos=()
# mutant ID FILE TEST-FILTER FROM TO: replace the one line containing FROM, FROM becoming TO.
mutant() { ids+=("$1"); files+=("$2"); filters+=("$3"); froms+=("$4"); tos+=("$5"); }

resilience=Sources/SidecarCore/Resilience
http=Sources/SidecarCore/HTTP
target=$http/HTTPRequestTarget.swift

mutant retry-budget $resilience/RetryBudgetStateMachine.swift \
    'RetryBudgetStateMachineTests|RetryStateMachineTests|DestinationResilienceTests' \
    'return Double(retries + 1) <= allowed' \
    'return true'
mutant breaker-limit $resilience/CircuitBreakerCounters.swift \
    'CircuitBreakerTests|DestinationResilienceTests|MaxRetriesTests|ResiliencePolicyTests' \
    'while current < limit {' \
    'while current <= limit {'
mutant outlier-threshold $resilience/OutlierDetectorStateMachine.swift \
    'OutlierDetectorStateMachineTests|ResiliencePolicyTests' \
    '(config.consecutive5xx > 0 && state.consecutive5xx >= config.consecutive5xx)' \
    '(config.consecutive5xx > 0 && state.consecutive5xx > config.consecutive5xx)'
mutant authz-wildcard Sources/SidecarCore/Routing/Authorizer.swift \
    'AuthorizerTests|HTTPProxyHandlerTests|MeshDataPlaneTests' \
    'rule.from.contains(caller) || rule.from.contains("*")' \
    'rule.from.contains(caller)'
mutant authz-methods Sources/SidecarCore/Routing/Authorizer.swift \
    'AuthorizerTests|HTTPProxyHandlerTests|MeshDataPlaneTests' \
    'if !rule.methods.isEmpty, !rule.methods.contains(method) { continue }' \
    'if false, !rule.methods.isEmpty, !rule.methods.contains(method) { continue }'
mutant framing-cl-te $http/HTTPFramingRules.swift \
    'HTTPSmugglingTests|HTTPHeadParserTests|HTTPDifferentialTests|HTTPProxyHandlerTests' \
    'if contentLength != nil { throw .conflictingFraming }' \
    'if false, contentLength != nil { throw .conflictingFraming }'
mutant tls-identity Sources/SidecarCore/TLS/TLSConfiguration.swift \
    'TLSRefusalTests|TLSHandshakeTests|MeshAPIClientIdentityTests|MeshDataPlaneTests' \
    'if allowed.contains(identity) { return nil }' \
    'if true { return nil }'
mutant caller-header-strip Sources/SidecarCore/Proxy/HTTPProxyHandler+Request.swift \
    'HTTPProxyHandlerTests|MeshDataPlaneTests|HostileRequestTests' \
    'static let identityHeaders = ["x-mesh-caller", "x-mesh-user"]' \
    'static let identityHeaders = ["x-mesh-user"]'
mutant resource-version Sources/ControlPlane/Store/SQLiteResourceStore.swift \
    'ResourceStoreTests|ApplyValidationTests|APIRouterTests' \
    'guard wanted == String(existingVersion) else {' \
    'guard true else {'
mutant idempotency $resilience/RetryStateMachine.swift \
    'RetryStateMachineTests|RetryTests' \
    'self.safeToResend = request.method.isIdempotent || request.hasIdempotencyKey' \
    'self.safeToResend = true'
mutant retry-metric Sources/SidecarCore/Upstream/ProxyLoopState.swift \
    'RetryTests|PerTryTimeoutTests|MaxRetriesTests' \
    'metrics.retries(peer: destination.service, reason: failure.reason).increment()' \
    '_ = metrics.retries(peer: destination.service, reason: failure.reason)'
# Path normalization (the security issue): routing and authorization see the path the app gets.
# Not HTTPProxyHandlerTests: a request these mutants wrongly allow reaches ProxyLoopState's
# ClientBootstrap on an EmbeddedEventLoop, a NIO fatal error that takes the whole test process
# down and hides which expectations failed.
mutant path-normalization-skipped $target \
    'HTTPRequestTargetTests|AuthorizerTests|HostileRequestTests' \
    'if try isAlreadyNormal(raw) { return nil }' \
    'if try isAlreadyNormal(raw) || true { return nil }'
mutant path-dot-dot-kept $target \
    'HTTPRequestTargetTests|AuthorizerTests|HostileRequestTests' \
    'if !segments.isEmpty { segments.removeLast() }' \
    'if false, !segments.isEmpty { segments.removeLast() }'
mutant path-prefix-not-segment $target \
    'HTTPRequestTargetTests|AuthorizerTests|HostileRequestTests' \
    'return next == nil || next == UInt8(ascii: "/")' \
    'return true'
interception=Sources/SidecarCore/Interception
mutant intercept-proxy-uid-redirected $interception/InterceptionRules.swift \
    'InterceptionRulesTests|InterceptionCommandLineTests|InterceptionTests' \
    '"\t\tmeta skuid \(proxyUID) return",' \
    '"\t\tmeta skuid \(proxyUID) continue",'
mutant intercept-sniff-default-http $interception/ProtocolSniffStateMachine.swift \
    'ProtocolSniffStateMachineTests|InterceptedConnectionHandlerTests|InterceptionTests' \
    'return possible ? .needMore : decide(.other)' \
    'return possible ? .needMore : decide(.http1)'
mutant intercept-shared-address-first Sources/SidecarCore/Routing/ServiceAddressMap.swift \
    'ServiceAddressMapTests|InterceptionTests' \
    'return matching.count == 1 ? matching[0] : nil' \
    'return matching.count == 1 ? matching[0] : candidates.first'
mutant intercept-explicit-is-redirected $interception/OriginalDestination.swift \
    'InterceptionTests' \
    'guard let destination, destination.port != local.port || destination.host != local.ipAddress else { return nil }' \
    'guard let destination else { return nil }'

full=0
wanted=()
for argument in "$@"; do
    case "$argument" in
        --full) full=1 ;;
        --list)
            for i in "${!ids[@]}"; do printf '%-26s %s\n%26s filter: %s\n' "${ids[$i]}" "${files[$i]}" "" "${filters[$i]}"; done
            exit 0 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "unknown option $argument" >&2; exit 2 ;;
        *) wanted+=("$argument") ;;
    esac
done
for name in "${wanted[@]}"; do
    [[ " ${ids[*]} " == *" $name "* ]] || { echo "no mutant named $name (--list shows them)" >&2; exit 2; }
done

per_run_limit="${per_run_limit:-$((full ? 3600 : 600))}"
mkdir -p "$logs"
backup="" backup_of=""
restore() {
    if [[ -n "$backup" ]]; then
        cat "$backup" > "$backup_of"  # same bytes (and inode) as before the mutant
        rm -f "$backup"
        backup="" backup_of=""
    fi
}
trap restore EXIT
trap 'restore; exit 130' INT TERM

killed=() survived=() stale=() invalid=()
for i in "${!ids[@]}"; do
    id="${ids[$i]}" file="${files[$i]}" from="${froms[$i]}" to="${tos[$i]}"
    if ((${#wanted[@]})) && [[ " ${wanted[*]} " != *" $id "* ]]; then continue; fi
    log="$logs/$id.log"
    count=$(grep -cF -- "$from" "$file" || true)
    if [[ "$count" != 1 ]]; then
        echo "STALE     $id: $count lines of $file contain: $from"
        stale+=("$id")
        continue
    fi
    backup="$(mktemp)" backup_of="$file"
    cat "$file" > "$backup"
    FROM="$from" TO="$to" perl -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$file"
    if cmp -s "$file" "$backup"; then
        echo "STALE     $id: the change did not apply to $file"
        stale+=("$id")
        restore
        continue
    fi
    echo "--- $id: $file: $(diff "$backup" "$file" | grep '^>' | sed 's/^> *//')" > "$log"
    if ! flock -o "$lock" swift build --build-tests >> "$log" 2>&1; then
        echo "INVALID   $id: does not compile (see $log)"
        invalid+=("$id")
    else
        filter_args=(--filter "${filters[$i]}")
        ((full)) && filter_args=(--parallel)
        started=$SECONDS
        status=0
        # No backtracer: a mutant that crashes the tests is killed either way, and swift-backtrace
        # outlives the crashed process (it held the lock for 15 minutes once). `flock -o` keeps
        # the lock's fd out of the command, so no leftover child can hold the lock.
        SWIFT_BACKTRACE=enable=no flock -o "$lock" timeout -k 10 "$per_run_limit" \
            swift test --skip-build "${filter_args[@]}" >> "$log" 2>&1 || status=$?
        if ((status == 0)); then
            echo "SURVIVED  $id ($((SECONDS - started)) s): every test passed with: $to"
            survived+=("$id")
        else
            # Name a few failing tests (Swift Testing's "✘ Test name(...)"), or the crash.
            failing=$(grep -oE '✘ Test [^ (]+' "$log" | sed 's/✘ Test //' | grep -vx run | sort -u | head -4 | paste -sd, - || true)
            crash=$(grep -m1 -oE 'Fatal error: .{0,80}' "$log" || true)
            [[ -n "$crash" ]] && failing="${failing:+$failing; }the test process crashed ($crash)"
            ((status == 124 || status == 137)) && failing="${failing:+$failing; }stopped after ${per_run_limit} s"
            echo "KILLED    $id ($((SECONDS - started)) s) by: ${failing:-the test run (see $log)}"
            killed+=("$id")
        fi
    fi
    restore
done

echo
echo "killed ${#killed[@]}, survived ${#survived[@]}, stale ${#stale[@]}, invalid ${#invalid[@]} (logs in $logs/)"
((${#survived[@]})) && echo "survived: ${survived[*]}"
((${#stale[@]})) && echo "stale: ${stale[*]}"
((${#invalid[@]})) && echo "invalid: ${invalid[*]}"
echo "the tree is as before; the next build recompiles the restored files"
((${#survived[@]} == 0))
