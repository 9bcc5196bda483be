//! Op mixes for `zabd bench`: named (`create`, `read90`, ...) or weighted lists
//! (`get=90,set=10`), and the small deterministic random source the workers pick with.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    SetData,
    GetData,
    Exists,
    GetChildren,
    /// A two-op multi: create a new node and setData an existing one.
    Multi,
    /// Create an ephemeral node and delete it again (one operation in the counts).
    EphemeralChurn,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::SetData => "set",
            Op::GetData => "get",
            Op::Exists => "exists",
            Op::GetChildren => "children",
            Op::Multi => "multi",
            Op::EphemeralChurn => "churn",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        [
            Op::Create,
            Op::SetData,
            Op::GetData,
            Op::Exists,
            Op::GetChildren,
            Op::Multi,
            Op::EphemeralChurn,
        ]
        .into_iter()
        .find(|o| o.name() == s)
    }
}

/// Weighted ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    parts: Vec<(Op, u32)>,
}

impl Mix {
    /// `create` | `set` | `get` | `exists` | `children` | `multi` | `churn` | `read90`
    /// (`get=90,set=10`) | a list `op=weight,...`.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let s = if s == "read90" { "get=90,set=10" } else { s };
        let mut parts = Vec::new();
        for item in s.split(',') {
            let (name, weight) = match item.split_once('=') {
                Some((n, w)) => (
                    n.trim(),
                    w.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("bad weight in {item:?}"))?,
                ),
                None => (item.trim(), 1),
            };
            let op = Op::parse(name).ok_or_else(|| {
                format!("unknown op {name:?} (create, set, get, exists, children, multi, churn, read90)")
            })?;
            if weight > 0 {
                parts.push((op, weight));
            }
        }
        if parts.is_empty() {
            return Err("an empty mix".into());
        }
        Ok(Mix { parts })
    }

    pub fn pick(&self, rng: &mut Rng) -> Op {
        let total: u32 = self.parts.iter().map(|(_, w)| w).sum();
        let mut r = rng.below(total as u64) as u32;
        for (op, w) in &self.parts {
            if r < *w {
                return *op;
            }
            r -= w;
        }
        self.parts[0].0
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parts.len() == 1 {
            return write!(f, "{}", self.parts[0].0.name());
        }
        let items: Vec<String> = self
            .parts
            .iter()
            .map(|(o, w)| format!("{}={w}", o.name()))
            .collect();
        write!(f, "{}", items.join(","))
    }
}

/// xorshift64*: fast, deterministic per worker.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let m = Mix::parse("read90").unwrap();
        assert_eq!(m.to_string(), "get=90,set=10");
        let mut rng = Rng::new(7);
        let gets = (0..10_000)
            .filter(|_| m.pick(&mut rng) == Op::GetData)
            .count();
        assert!((8_500..9_500).contains(&gets), "{gets}");
        assert_eq!(Mix::parse("create").unwrap().to_string(), "create");
        assert!(Mix::parse("bogus").is_err());
        assert!(Mix::parse("get=x").is_err());
    }
}
