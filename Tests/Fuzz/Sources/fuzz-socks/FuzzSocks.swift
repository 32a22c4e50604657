import LNPFuzzTargets

/// libFuzzer's per-input callback (see Package.swift for how `main` is wired).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    SOCKSTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@main
enum FuzzSocks {
    static func main() {
        FuzzDriver.run(prepare: SOCKSTarget.prepare) { data, size in fuzz(data!, size) }
    }
}
