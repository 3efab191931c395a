//! keelson's pause program: the sandbox container's process. It holds the pod's namespaces,
//! reaps orphaned children (SIGCHLD) and exits 0 on SIGINT or SIGTERM. No crates: libc only.

use std::os::raw::c_int;

unsafe extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;

extern "C" fn on_term(_signum: c_int) {
    unsafe { _exit(0) }
}

extern "C" fn on_child(_signum: c_int) {
    let mut status: c_int = 0;
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("keelson pause 1");
        return;
    }
    if std::process::id() != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    unsafe {
        signal(SIGINT, on_term as extern "C" fn(c_int) as usize);
        signal(SIGTERM, on_term as extern "C" fn(c_int) as usize);
        signal(SIGCHLD, on_child as extern "C" fn(c_int) as usize);
    }
    loop {
        unsafe {
            pause();
        }
    }
}
