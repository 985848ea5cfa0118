import Dispatch

// The command runs on the global executor while the main thread waits, instead of an async
// main: that drains the main queue with `dispatch_main()`, which ends the main thread with
// `pthread_exit`, and the forced unwind of its stack faults in ~0.5 MiB of the binary's
// .eh_frame_hdr/.eh_frame (bench/README.md "Idle memory"). Nothing in the sidecar runs on
// the main actor.
let finished = DispatchSemaphore(value: 0)
Task.detached {
    await SidecarCommand.main()
    finished.signal()
}
finished.wait()
