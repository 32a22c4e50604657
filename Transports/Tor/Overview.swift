/// Tor for LNP Node: a SOCKS5 client to tor's SocksPort (a `TCPDialer` for the TCP
/// transport, so a `.onion` peer runs the same BOLT-8 session as a clearnet one), a
/// client for tor's control protocol (authentication, bootstrap progress, onion services)
/// and a launcher that runs and supervises the node's own tor.
public enum Tor {}
