import LNPFuzzTargets

/// libFuzzer's per-input callback (see Package.swift for how `main` is wired).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    DatagramTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@main
enum FuzzDatagram {
    static func main() {
        FuzzDriver.run(prepare: DatagramTarget.prepare) { data, size in fuzz(data!, size) }
    }
}
