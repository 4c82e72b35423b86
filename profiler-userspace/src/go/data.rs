//! Names for the Go runtime's own variables in a stripped binary, where
//! they can be found. No symbol table is left, but code that uses a
//! variable carries its address: `runtime.rt0_go`, the first Go code a
//! program runs, takes the address of `runtime.g0` (first) and of
//! `runtime.m0` (the lowest address it takes above g0's). The main thread's
//! `m0` holds the note the runtime parks that thread on: a futex word the
//! futex profile sees, named `runtime.m0+0x158` in an unstripped build and
//! now in a stripped one too.

use super::{
    binary::{GoBinary, RuntimeVariable},
    offsets, x86,
};

/// The bytes of `runtime.m0` named, at most (the smallest `runtime.m`).
const M0_NAMED: u64 = 0x3f0;

impl GoBinary {
    /// The runtime variables found in the code (empty when the code is not
    /// as expected); decoded once.
    pub fn runtime_variables(&self) -> &[RuntimeVariable] {
        self.variables.get_or_init(|| self.find_runtime_variables())
    }

    fn find_runtime_variables(&self) -> Vec<RuntimeVariable> {
        let function = ["runtime.rt0_go.abi0", "runtime.rt0_go"]
            .iter()
            .find_map(|name| self.table.function_by_name(name));
        let Some(function) = function else {
            return Vec::new();
        };
        let Some(code) = self.code(function.entry..function.end) else {
            return Vec::new();
        };
        let targets: Vec<u64> = x86::rip_leas(code, function.entry)
            .iter()
            .map(|lea| lea.target)
            .collect();
        let Some(&g0) = targets.first() else {
            return Vec::new();
        };
        let g_size = self
            .build
            .as_ref()
            .and_then(|b| b.go_release())
            .and_then(offsets::layout)
            .map_or(0, |layout| layout.size);
        let mut variables = vec![RuntimeVariable {
            name: "runtime.g0",
            address: g0,
            size: g_size,
        }];
        if let Some(m0) = targets.iter().copied().filter(|t| *t > g0 + g_size).min() {
            variables.push(RuntimeVariable {
                name: "runtime.m0",
                address: m0,
                size: M0_NAMED,
            });
        }
        variables
    }

    /// The runtime variable at an ELF virtual address, as `name+0xoff`.
    pub fn variable_at(&self, address: u64) -> Option<String> {
        self.runtime_variables()
            .iter()
            .find(|v| v.address <= address && address < v.address + v.size.max(1))
            .map(|v| match address - v.address {
                0 => v.name.to_owned(),
                offset => format!("{}+{offset:#x}", v.name),
            })
    }
}
