import Testing

@testable import SidecarCore

@Suite struct TLSHandlerStateMachineTests {
    @Test func writesAreBufferedUntilTheHandshakeCompletes() {
        var machine = TLSHandlerStateMachine()
        #expect(machine.write() == .buffer)
        #expect(machine.channelActive() == .startHandshake)
        #expect(machine.channelActive() == .none)
        #expect(machine.write() == .buffer)
        #expect(machine.handshakeCompleted() == .announceAndFlushBuffered)
        #expect(machine.write() == .encrypt)
        #expect(machine.handshakeCompleted() == .none)
    }

    @Test func closeBeforeTheHandshakeClosesTheTransportAtOnce() {
        var machine = TLSHandlerStateMachine()
        _ = machine.channelActive()
        #expect(machine.closeRequested() == .closeTransport)
        #expect(machine.write() == .failClosed)
        #expect(machine.closeRequested() == .alreadyClosing)
    }

    @Test func closeWhenActiveSendsCloseNotify() {
        var machine = TLSHandlerStateMachine()
        _ = machine.channelActive()
        _ = machine.handshakeCompleted()
        #expect(machine.closeRequested() == .sendCloseNotifyThenClose)
        #expect(machine.closeNotifyReceived() == .none)
    }

    @Test func peerCloseNotifyIsAnsweredOnce() {
        var machine = TLSHandlerStateMachine()
        _ = machine.channelActive()
        _ = machine.handshakeCompleted()
        #expect(machine.closeNotifyReceived() == .replyAndClose)
        #expect(machine.closeNotifyReceived() == .none)
        #expect(machine.closeRequested() == .alreadyClosing)
    }

    @Test func timeoutOnlyMattersDuringTheHandshake() {
        var machine = TLSHandlerStateMachine()
        _ = machine.channelActive()
        _ = machine.handshakeCompleted()
        #expect(machine.handshakeTimedOut() == .none)
        var waiting = TLSHandlerStateMachine()
        _ = waiting.channelActive()
        #expect(waiting.handshakeTimedOut() == .reportAndClose)
        #expect(waiting.failed() == .reportAndClose)
        #expect(waiting.failed() == .none)
        #expect(waiting.handshakeTimedOut() == .none)
    }

    @Test func inactiveDuringHandshakeIsReported() {
        var machine = TLSHandlerStateMachine()
        _ = machine.channelActive()
        #expect(machine.channelInactive() == .reportHandshakeInterrupted)
        var done = TLSHandlerStateMachine()
        _ = done.channelActive()
        _ = done.handshakeCompleted()
        #expect(done.channelInactive() == .none)
    }
}
