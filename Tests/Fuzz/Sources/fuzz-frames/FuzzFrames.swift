import LNPFuzzTargets

/// libFuzzer's per-input callback (see Package.swift for how `main` is wired).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FramesTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@main
enum FuzzFrames {
    static func main() {
        FuzzDriver.run(prepare: FramesTarget.prepare) { data, size in fuzz(data!, size) }
    }
}
