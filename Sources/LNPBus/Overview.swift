// LNPBus: the service bus of LNP Node, over libzmq.
//
// Shape
//   A service binds a `BusServer`: a ROUTER for requests and a PUB for events. Callers
//   hold one `BusClient` (DEALER) per service they call and a `BusSubscriber` (one SUB per
//   service) for events. `BusLayout` is the only place that turns a service name into
//   an endpoint: inproc (threads of one process, one namespace per node), ipc (socket
//   files, mode 0600, in the node's data directory) or tcp (CURVE only; servers accept
//   client keys through the context's ZAP handler).
//
// Threads
//   Every server, client and subscriber owns one OS thread that creates, polls and
//   closes its sockets; no socket is touched by any other thread, by a NIO event loop or
//   by a Swift concurrency executor. Other threads hand work over through a locked queue
//   and a wake-up pipe that sits in the same `zmq_poll` set; the pipe is written only
//   when the queue goes from idle to pending, so a burst costs one wake-up. Handlers run
//   on the node's thread: a reply given inside the handler is sent directly, one given
//   later from any thread goes through the queue. Every socket has ZMQ_LINGER 0 and
//   `BusContext.close()` shuts down the nodes still open before it terminates libzmq.
//
// Wire format (one frame; the ROUTER adds the client's routing id in front)
//   kind u8 (1 request, 2 reply, 3 failure, 4 event) | method u16 | id u64 | body
//   The body of a failure is code u16 | length u16 | UTF-8 message (at most 4 KiB);
//   every other body is the caller's payload (at most 64 MiB). Kind and method come
//   first so a SUB's prefix filter selects events by method. Integers are big-endian,
//   written with LNPWire's WireWriter and read with its WireReader. Frames that break
//   these rules are dropped with a (rate-limited) log line.
//
// Reserved methods (0xFF00...0xFFFF)
//   `ready` (0xFF00): the event a server publishes once bound, and again whenever it is
//   pinged, so a subscriber that joined late still sees one through its own SUB socket.
//   `ping` (0xFF01): answered by the server itself, never by the handler.
