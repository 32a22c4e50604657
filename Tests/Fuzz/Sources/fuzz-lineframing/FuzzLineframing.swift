import LNPFuzzTargets

/// libFuzzer's per-input callback (see Package.swift for how `main` is wired).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    LineFramingTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@main
enum FuzzLineframing {
    static func main() {
        FuzzDriver.run(prepare: LineFramingTarget.prepare) { data, size in fuzz(data!, size) }
    }
}
