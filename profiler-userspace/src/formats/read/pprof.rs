//! pprof (profile.proto) read back, ours and Go's (CPU, heap, mutex, block,
//! goroutine) alike: each sample's locations become function names, root
//! first, an inlined function before the one it was inlined into (as
//! `go tool pprof` shows them). Every index is checked: a string, location
//! or function the profile does not have is an error naming the field.

use std::{collections::HashMap, rc::Rc};

use anyhow::bail;
use prost::Message as _;

use crate::{
    formats::pprof::proto,
    model::{LoadedFormat, LoadedProfile, LoadedStack, ValueType},
};

/// The most frames all samples may hold together: a few KB of locations
/// with many inlined lines, referred to by many samples, would otherwise
/// ask for gigabytes.
const MAX_FRAMES: usize = 1 << 24;

/// Reads an unzipped profile.proto; `origin` names the file in errors.
pub fn parse(bytes: &[u8], origin: &str) -> anyhow::Result<LoadedProfile> {
    let profile = proto::Profile::decode(bytes).map_err(|err| {
        anyhow::anyhow!(
            "{origin} is neither text (folded stacks, a goroutine dump) nor a pprof profile: its protobuf does not decode ({err})"
        )
    })?;
    let strings = &profile.string_table;
    let string = |index: i64, field: &str| -> anyhow::Result<&str> {
        usize::try_from(index)
            .ok()
            .and_then(|i| strings.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{origin}: {field} is string {index}, but the string table has {} strings",
                    strings.len()
                )
            })
    };
    if profile.sample_type.is_empty() {
        bail!("{origin}: the pprof profile has no sample types, so its values mean nothing");
    }
    let mut sample_types = Vec::with_capacity(profile.sample_type.len());
    for (i, t) in profile.sample_type.iter().enumerate() {
        sample_types.push(ValueType::new(
            string(t.r#type, &format!("sample_type[{i}].type"))?,
            string(t.unit, &format!("sample_type[{i}].unit"))?,
        ));
    }
    let default_type = match profile.default_sample_type {
        0 => sample_types.len() - 1,
        index => {
            let name = string(index, "default_sample_type")?;
            sample_types
                .iter()
                .position(|t| t.name == name)
                .unwrap_or(sample_types.len() - 1)
        }
    };

    let mut function_names: HashMap<u64, Rc<str>> = HashMap::new();
    for (i, f) in profile.function.iter().enumerate() {
        let mut name = string(f.name, &format!("function[{i}].name"))?;
        if name.is_empty() {
            name = string(f.system_name, &format!("function[{i}].system_name"))?;
        }
        let name = if name.is_empty() { "[unknown]" } else { name };
        function_names.insert(f.id, Rc::from(name));
    }
    let mut mappings: HashMap<u64, &proto::Mapping> = HashMap::new();
    for m in &profile.mapping {
        mappings.insert(m.id, m);
    }
    // Each location's names, root first.
    let mut locations: HashMap<u64, Vec<Rc<str>>> = HashMap::new();
    for (i, location) in profile.location.iter().enumerate() {
        let mut names = Vec::with_capacity(location.line.len().max(1));
        for (j, line) in location.line.iter().enumerate().rev() {
            let name = function_names.get(&line.function_id).ok_or_else(|| {
                anyhow::anyhow!(
                    "{origin}: location[{i}].line[{j}] refers to function {}, which the profile does not have",
                    line.function_id
                )
            })?;
            names.push(name.clone());
        }
        if names.is_empty() {
            names.push(unnamed(location, &mappings, strings).into());
        }
        locations.insert(location.id, names);
    }

    let mut stacks = Vec::with_capacity(profile.sample.len());
    let mut frames_in_all = 0usize;
    for (i, sample) in profile.sample.iter().enumerate() {
        if sample.value.len() != sample_types.len() {
            bail!(
                "{origin}: sample[{i}] has {} values, but the profile has {} sample types",
                sample.value.len(),
                sample_types.len()
            );
        }
        if let Some((j, v)) = sample.value.iter().enumerate().find(|(_, v)| **v < 0) {
            bail!(
                "{origin}: sample[{i}].value[{j}] is negative ({v}); a profile to compare holds no negative values (is it already a difference?)"
            );
        }
        let mut frames = Vec::new();
        for id in sample.location_id.iter().rev() {
            let names = locations.get(id).ok_or_else(|| {
                anyhow::anyhow!(
                    "{origin}: sample[{i}] refers to location {id}, which the profile does not have"
                )
            })?;
            frames_in_all += names.len();
            if frames_in_all > MAX_FRAMES {
                bail!(
                    "{origin}: its samples hold more than {MAX_FRAMES} frames in all (sample[{i}]); that is no profile diff can hold"
                );
            }
            frames.extend(names.iter().cloned());
        }
        stacks.push(LoadedStack {
            frames,
            values: sample.value.clone(),
            site: None,
        });
    }
    Ok(LoadedProfile {
        origin: origin.to_owned(),
        format: LoadedFormat::Pprof,
        sample_types,
        default_type,
        stacks,
    })
}

/// A location without functions: its file and offset, as our unsymbolized
/// frames are named (`[unknown] libc.so.6+0x1a2b`), else its address.
fn unnamed(
    location: &proto::Location,
    mappings: &HashMap<u64, &proto::Mapping>,
    strings: &[String],
) -> String {
    let file = mappings.get(&location.mapping_id).and_then(|m| {
        let path = usize::try_from(m.filename)
            .ok()
            .and_then(|i| strings.get(i))?;
        let offset = location
            .address
            .checked_sub(m.memory_start)?
            .checked_add(m.file_offset)?;
        let name = path.rsplit('/').next().unwrap_or(path);
        (!name.is_empty()).then(|| format!("[unknown] {name}+{offset:#x}"))
    });
    file.unwrap_or_else(|| format!("[unknown] {:#x}", location.address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn sample_profile() -> proto::Profile {
        proto::Profile {
            sample_type: vec![
                proto::ValueType { r#type: 1, unit: 2 },
                proto::ValueType { r#type: 3, unit: 4 },
            ],
            sample: vec![proto::Sample {
                location_id: vec![2, 1],
                value: vec![3, 30_000_000],
                label: vec![],
            }],
            location: vec![
                proto::Location {
                    id: 1,
                    line: vec![proto::Line {
                        function_id: 1,
                        line: 3,
                    }],
                    ..Default::default()
                },
                // `leaf` inlined into `mid`.
                proto::Location {
                    id: 2,
                    line: vec![
                        proto::Line {
                            function_id: 3,
                            line: 9,
                        },
                        proto::Line {
                            function_id: 2,
                            line: 5,
                        },
                    ],
                    ..Default::default()
                },
            ],
            function: vec![
                proto::Function {
                    id: 1,
                    name: 5,
                    ..Default::default()
                },
                proto::Function {
                    id: 2,
                    name: 6,
                    ..Default::default()
                },
                proto::Function {
                    id: 3,
                    name: 7,
                    ..Default::default()
                },
            ],
            string_table: strings(&[
                "",
                "samples",
                "count",
                "cpu",
                "nanoseconds",
                "main.main",
                "main.mid",
                "main.leaf",
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn reads_stacks_root_first_with_inlined_frames() {
        let bytes = sample_profile().encode_to_vec();
        let p = parse(&bytes, "f").ok();
        let p = p.as_ref();
        assert_eq!(p.map(|p| p.default_type), Some(1), "the last type");
        let frames: Vec<String> = p
            .map(|p| p.stacks[0].frames.iter().map(|f| f.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(frames, ["main.main", "main.mid", "main.leaf"]);
    }

    #[test]
    fn bad_indices_are_named() {
        let err = |p: proto::Profile| {
            parse(&p.encode_to_vec(), "f.pb")
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        let mut p = sample_profile();
        p.function[1].name = 99;
        assert!(err(p).contains("f.pb: function[1].name is string 99, but the string table has 8"));
        let mut p = sample_profile();
        p.sample[0].location_id.push(7);
        assert!(err(p).contains("sample[0] refers to location 7"));
        let mut p = sample_profile();
        p.location[0].line[0].function_id = 42;
        assert!(err(p).contains("location[0].line[0] refers to function 42"));
        let mut p = sample_profile();
        p.sample[0].value.pop();
        assert!(err(p).contains("sample[0] has 1 values, but the profile has 2 sample types"));
        let mut p = sample_profile();
        p.sample[0].value[0] = -1;
        assert!(err(p).contains("sample[0].value[0] is negative"));
        let mut p = sample_profile();
        p.sample_type.clear();
        assert!(err(p).contains("no sample types"));
    }
}
