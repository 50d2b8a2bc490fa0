//! No leaked threads, counted by the operating system (this binary holds this one test only,
//! so no other test starts threads meanwhile).

#[cfg(target_os = "linux")]
#[test]
fn process_has_no_more_threads_after_the_world_is_dropped() {
    use mta_sts_testkit::probe::{DnsProbe, HttpsProbe};
    use mta_sts_testkit::{Domain, POLICY_PATH, RecordType, World};

    fn os_threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    let before = os_threads();
    for _ in 0..3 {
        let w = World::builder()
            .domain("example.com", Domain::enforce(["mx1.example.com"]))
            .build()
            .unwrap();
        assert!(os_threads() > before);
        DnsProbe::for_world(&w)
            .tcp("_mta-sts.example.com", RecordType::Txt)
            .unwrap();
        HttpsProbe::for_world(&w)
            .get("mta-sts.example.com", POLICY_PATH)
            .unwrap();
        drop(w);
        assert_eq!(os_threads(), before);
    }
}
