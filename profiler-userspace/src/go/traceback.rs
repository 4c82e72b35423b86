//! Completing frame-pointer stacks of Go code as Go's own traceback would.
//! A frame-pointer walk misses one frame when the sampled function has not
//! saved the frame pointer yet: in its prologue, or all along in a leaf
//! function without a frame (Go omits it for leaves with no locals, and
//! for assembly wrappers such as `runtime.futex`). The walk's first return
//! address then belongs to the caller's caller. Go's traceback knows frame
//! sizes; here the missing caller is found from the code: the call
//! instruction before that return address names the function the
//! caller's caller called (the missing caller), and that function's own
//! call to the sampled function gives the missing return address.
//!
//! A walk also runs on past the function a Go stack starts in (the
//! goroutine's `runtime.goexit`, a thread's `runtime.mstart`), into
//! whatever the frame pointer held there; Go's traceback stops at those
//! functions, and so do these stacks.

use super::binary::GoBinary;

/// The functions a Go stack starts in (Go's "top frames").
const TOP_FRAMES: &[&str] = &[
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.mstart",
    "runtime.mstart.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
];

/// `CALL rel32`.
const CALL_REL32: u8 = 0xe8;
/// Its length.
const CALL_LEN: u64 = 5;

impl GoBinary {
    /// Completes a frame-pointer stack of Go code (`ips`: process
    /// addresses, leaf first; `bias`: process address minus ELF address):
    /// inserts the frame the walk missed, and cuts what it read past the
    /// function the stack starts in.
    pub fn complete_stack(&self, ips: &mut Vec<u64>, bias: u64) {
        self.insert_missed_caller(ips, bias);
        let top = ips.iter().position(|ip| {
            ip.checked_sub(bias)
                .and_then(|pc| self.table.function(pc.saturating_sub(1)))
                .is_some_and(|f| TOP_FRAMES.contains(&f.name.as_str()))
        });
        if let Some(top) = top {
            ips.truncate(top + 1);
        }
    }

    /// Inserts the return address a frame-pointer walk of Go code missed
    /// (see the module's description) into `ips` (ELF addresses, leaf
    /// first, `bias` subtracted from process addresses). Returns whether it
    /// did.
    fn insert_missed_caller(&self, ips: &mut Vec<u64>, bias: u64) -> bool {
        let (Some(&leaf), Some(&first_return)) = (ips.first(), ips.get(1)) else {
            return false;
        };
        let (Some(leaf), Some(first_return)) =
            (leaf.checked_sub(bias), first_return.checked_sub(bias))
        else {
            return false;
        };
        let Some(sampled) = self.table.function(leaf) else {
            return false;
        };
        // What the function at the first return address called there.
        let Some(called) = self.call_target(first_return) else {
            return false;
        };
        if called == sampled.entry {
            return false;
        }
        let Some(caller) = self.table.function(called) else {
            return false;
        };
        if caller.entry != called {
            return false;
        }
        // Where the missing caller calls the sampled function (its first
        // such call when there are several; none for an indirect call).
        let Some(code) = self.code(caller.entry..caller.end) else {
            return false;
        };
        let site = (0..code.len().saturating_sub(CALL_LEN as usize - 1)).find(|&i| {
            let at = caller.entry + i as u64;
            code[i] == CALL_REL32 && self.call_target(at + CALL_LEN) == Some(sampled.entry)
        });
        let Some(site) = site else {
            return false;
        };
        ips.insert(1, caller.entry + site as u64 + CALL_LEN + bias);
        true
    }

    /// The function a direct call ending at `return_address` calls.
    fn call_target(&self, return_address: u64) -> Option<u64> {
        let code = self.code(return_address.checked_sub(CALL_LEN)?..return_address)?;
        if code.first() != Some(&CALL_REL32) {
            return None;
        }
        let displacement = i32::from_le_bytes(code.get(1..5)?.try_into().ok()?);
        return_address.checked_add_signed(i64::from(displacement))
    }
}
