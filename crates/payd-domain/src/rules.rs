//! Which balance pays: the MCC → category map (L1) and the merchant override table (L3).
//!
//! Both are data: the MCC map comes from configuration, the merchant table is managed at
//! runtime and persisted by the store. A merchant match always beats the MCC, because
//! acquirers send wrong MCCs often enough that operators need the override.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::{Category, IdError, Mcc};

/// MCC → category, with CASH for every code not in the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MccMap(BTreeMap<Mcc, Category>);

/// The `--mcc-map` text was not a list of `MCC=CATEGORY` pairs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MCC map entry {entry:?}: expected MCC=CATEGORY, e.g. 5411=FOOD")]
pub struct MccMapError {
    /// The offending entry.
    pub entry: String,
}

impl Default for MccMap {
    /// The map of the spec: 5411/5412 → FOOD, 5811/5812 → MEAL.
    fn default() -> MccMap {
        MccMap::parse(MccMap::DEFAULT_TEXT).unwrap_or_else(|_| MccMap(BTreeMap::new()))
    }
}

impl MccMap {
    /// The default map in its text form (also the default of the `--mcc-map` flag).
    pub const DEFAULT_TEXT: &'static str = "5411=FOOD,5412=FOOD,5811=MEAL,5812=MEAL";

    /// Parses `5411=FOOD,5811=MEAL`. An empty text is an empty map (everything is CASH).
    pub fn parse(text: &str) -> Result<MccMap, MccMapError> {
        let mut map = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let error = || MccMapError {
                entry: entry.to_owned(),
            };
            let (mcc, category) = entry.split_once('=').ok_or_else(error)?;
            let mcc = Mcc::parse(mcc.trim()).map_err(|_| error())?;
            let category = category.trim().parse().map_err(|_| error())?;
            map.insert(mcc, category);
        }
        Ok(MccMap(map))
    }

    /// The category for an MCC; CASH when the code is not mapped.
    pub fn category(&self, mcc: Mcc) -> Category {
        self.0.get(&mcc).copied().unwrap_or(Category::Cash)
    }
}

/// A merchant-table key: an exact merchant name (`UBER EATS`) or a prefix ending in `*`
/// (`PICPAY*`). Stored normalized: upper case, single spaces, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MerchantPattern {
    normalized: String,
    prefix: bool,
}

impl MerchantPattern {
    /// Longest pattern, in characters, including a trailing `*`.
    pub const LEN_MAX: usize = 64;

    /// Validates and normalizes a pattern. A `*` is allowed only as the last character.
    pub fn parse(text: &str) -> Result<MerchantPattern, IdError> {
        let normalized = normalize(text);
        if normalized.is_empty() {
            return Err(IdError::Empty);
        }
        if normalized.chars().count() > Self::LEN_MAX {
            return Err(IdError::TooLong { max: Self::LEN_MAX });
        }
        let (body, prefix) = match normalized.strip_suffix('*') {
            Some(body) => (body.trim_end(), true),
            None => (normalized.as_str(), false),
        };
        if body.is_empty() || body.contains('*') || body.chars().any(char::is_control) {
            return Err(IdError::BadCharacter {
                allowed: "a merchant name, optionally ending in a single '*'",
            });
        }
        Ok(MerchantPattern {
            normalized: body.to_owned(),
            prefix,
        })
    }

    /// Whether this pattern matches every name that starts with it.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether the pattern matches a merchant name (already extracted by [`merchant_name`]).
    pub fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.normalized)
        } else {
            name == self.normalized
        }
    }
}

impl fmt::Display for MerchantPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// Upper case, trimmed, inner whitespace runs folded to one space.
fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Length of the fixed card-acceptor field: name (25) + city (12) + space + country (2).
const ACCEPTOR_FIELD_LEN: usize = 40;
/// Length of the name part of that field.
const ACCEPTOR_NAME_LEN: usize = 25;

/// The merchant's name from the card-acceptor field, normalized for matching.
///
/// The field is usually 40 characters: name (25, left aligned), city (12, right aligned),
/// a space and a 2-letter country. We match on the name alone so that the same merchant in
/// another city matches too. For a field of 40 characters or more the name is its first 25;
/// for a shorter, free-form field it is the text before the first run of two spaces (the
/// padding that separates name from city), or the whole text.
pub fn merchant_name(field: &str) -> String {
    if field.chars().count() >= ACCEPTOR_FIELD_LEN {
        let name: String = field.chars().take(ACCEPTOR_NAME_LEN).collect();
        return normalize(&name);
    }
    let name = field.trim_start().split("  ").next().unwrap_or_default();
    normalize(name)
}

/// The merchant override table: exact names beat prefixes; among prefixes the longest wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerchantRules {
    exact: HashMap<String, Category>,
    /// Sorted by pattern length, longest first, so the first match is the most specific.
    prefixes: Vec<(MerchantPattern, Category)>,
}

impl MerchantRules {
    /// Builds the table from (pattern, category) pairs; a later duplicate replaces an earlier.
    pub fn new(entries: impl IntoIterator<Item = (MerchantPattern, Category)>) -> MerchantRules {
        let mut rules = MerchantRules::default();
        for (pattern, category) in entries {
            rules.insert(pattern, category);
        }
        rules
    }

    /// The default table: `UBER EATS` → MEAL, `UBER TRIP` → CASH, `PICPAY*` → CASH,
    /// `IFOOD*` → MEAL.
    pub fn default_entries() -> Vec<(MerchantPattern, Category)> {
        [
            ("UBER EATS", Category::Meal),
            ("UBER TRIP", Category::Cash),
            ("PICPAY*", Category::Cash),
            ("IFOOD*", Category::Meal),
        ]
        .into_iter()
        .filter_map(|(text, category)| Some((MerchantPattern::parse(text).ok()?, category)))
        .collect()
    }

    /// Adds or replaces one pattern.
    pub fn insert(&mut self, pattern: MerchantPattern, category: Category) {
        self.remove(&pattern);
        if pattern.prefix {
            self.prefixes.push((pattern, category));
            self.prefixes.sort_by(|(a, _), (b, _)| {
                b.normalized.len().cmp(&a.normalized.len()).then(a.cmp(b))
            });
        } else {
            self.exact.insert(pattern.normalized, category);
        }
    }

    /// Removes one pattern; whether it was present.
    pub fn remove(&mut self, pattern: &MerchantPattern) -> bool {
        if pattern.prefix {
            let before = self.prefixes.len();
            self.prefixes.retain(|(p, _)| p != pattern);
            before != self.prefixes.len()
        } else {
            self.exact.remove(&pattern.normalized).is_some()
        }
    }

    /// The override for a card-acceptor field, if any pattern matches its name.
    pub fn category(&self, merchant_field: &str) -> Option<Category> {
        let name = merchant_name(merchant_field);
        if name.is_empty() {
            return None;
        }
        if let Some(category) = self.exact.get(&name) {
            return Some(*category);
        }
        self.prefixes
            .iter()
            .find(|(pattern, _)| pattern.matches(&name))
            .map(|(_, category)| *category)
    }
}

/// Everything the authorization decision needs to pick a category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// L1: MCC → category.
    pub mcc: MccMap,
    /// L3: merchant overrides, which beat the MCC.
    pub merchants: MerchantRules,
}

impl Rules {
    /// The category a transaction is charged to first: the merchant override if one
    /// matches, else the MCC's category.
    pub fn category(&self, mcc: Mcc, merchant_field: &str) -> Category {
        self.merchants
            .category(merchant_field)
            .unwrap_or_else(|| self.mcc.category(mcc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcc(text: &str) -> Mcc {
        Mcc::parse(text).unwrap()
    }

    fn pattern(text: &str) -> MerchantPattern {
        MerchantPattern::parse(text).unwrap()
    }

    #[test]
    fn l1_default_mcc_map() {
        let map = MccMap::default();
        assert_eq!(map.category(mcc("5411")), Category::Food);
        assert_eq!(map.category(mcc("5412")), Category::Food);
        assert_eq!(map.category(mcc("5811")), Category::Meal);
        assert_eq!(map.category(mcc("5812")), Category::Meal);
        assert_eq!(map.category(mcc("5999")), Category::Cash);
        assert_eq!(map.category(mcc("0000")), Category::Cash);
    }

    #[test]
    fn mcc_map_is_configurable() {
        let map = MccMap::parse(" 5411=MEAL , 7011=FOOD,").unwrap();
        assert_eq!(map.category(mcc("5411")), Category::Meal);
        assert_eq!(map.category(mcc("7011")), Category::Food);
        assert_eq!(map.category(mcc("5811")), Category::Cash, "not in this map");
        assert_eq!(
            MccMap::parse("").unwrap().category(mcc("5411")),
            Category::Cash
        );
        for bad in ["5411", "5411=food", "541=FOOD", "5411=FOOD=MEAL", "x=CASH"] {
            assert!(MccMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merchant_name_is_the_trimmed_name_part() {
        let field = "PADARIA DO ZE               SAO PAULO BR";
        assert_eq!(field.len(), 40);
        assert_eq!(merchant_name(field), "PADARIA DO ZE");
        let other_city = format!("{:<25}{:>12} {}", "UBER EATS", "RIO", "BR");
        assert_eq!(merchant_name(&other_city), "UBER EATS");
        assert_eq!(merchant_name("uber   eats"), "UBER");
        assert_eq!(merchant_name("Uber Eats"), "UBER EATS");
        assert_eq!(merchant_name("UBER EATS   SAO PAULO BR"), "UBER EATS");
        assert_eq!(merchant_name("   "), "");
    }

    #[test]
    fn patterns_validate_and_normalize() {
        assert_eq!(pattern(" uber  eats ").to_string(), "UBER EATS");
        assert_eq!(pattern("picpay*").to_string(), "PICPAY*");
        assert!(pattern("PICPAY*").is_prefix());
        assert!(MerchantPattern::parse("").is_err());
        assert!(MerchantPattern::parse("*").is_err());
        assert!(MerchantPattern::parse("A*B").is_err());
        assert!(MerchantPattern::parse("A**").is_err());
        assert!(MerchantPattern::parse(&"A".repeat(65)).is_err());
    }

    #[test]
    fn l3_merchant_beats_mcc_and_matches_in_any_city() {
        let rules = Rules {
            mcc: MccMap::default(),
            merchants: MerchantRules::new(MerchantRules::default_entries()),
        };
        let uber_eats_sp = format!("{:<25}{:>12} {}", "UBER EATS", "SAO PAULO", "BR");
        let uber_eats_rj = format!("{:<25}{:>12} {}", "UBER EATS", "RIO", "BR");
        assert_eq!(rules.category(mcc("5411"), &uber_eats_sp), Category::Meal);
        assert_eq!(rules.category(mcc("5411"), &uber_eats_rj), Category::Meal);
        let uber_trip = format!("{:<25}{:>12} {}", "UBER TRIP", "SAO PAULO", "BR");
        assert_eq!(rules.category(mcc("5811"), &uber_trip), Category::Cash);
        let picpay = format!("{:<25}{:>12} {}", "PICPAY*BILHETEUNICO", "GOIANIA", "BR");
        assert_eq!(rules.category(mcc("5411"), &picpay), Category::Cash);
        let bakery = "PADARIA DO ZE               SAO PAULO BR";
        assert_eq!(
            rules.category(mcc("5411"), bakery),
            Category::Food,
            "no override: MCC"
        );
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let mut rules = MerchantRules::new([
            (pattern("UBER*"), Category::Cash),
            (pattern("UBER EA*"), Category::Food),
            (pattern("UBER EATS"), Category::Meal),
        ]);
        assert_eq!(rules.category("UBER EATS"), Some(Category::Meal));
        assert_eq!(rules.category("UBER EATSX"), Some(Category::Food));
        assert_eq!(rules.category("UBER X"), Some(Category::Cash));
        assert_eq!(rules.category("UBE"), None);
        assert!(rules.remove(&pattern("UBER EATS")));
        assert!(!rules.remove(&pattern("UBER EATS")));
        assert_eq!(rules.category("UBER EATS"), Some(Category::Food));
        rules.insert(pattern("UBER*"), Category::Meal);
        assert_eq!(
            rules.category("UBER X"),
            Some(Category::Meal),
            "replaced, not duplicated"
        );
    }
}
