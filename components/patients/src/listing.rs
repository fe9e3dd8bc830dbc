//! `GET /patients` parameters: paging (from 1), size 1–100, sort direction and field, and a
//! case-insensitive name search. Anything else is a 400 naming the parameter.
use kit::fields::FieldErrors;
use kit::request::query_pairs;

pub const DEFAULT_SIZE: u32 = 10;
pub const MAX_SIZE: u32 = 100;
pub const MAX_SEARCH_CHARS: usize = 100;
/// The last page any size can reach without the offset overflowing.
pub const MAX_PAGE: u32 = u32::MAX / MAX_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    Name,
    Email,
    DateOfBirth,
    RegisteredDate,
}

impl SortField {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "name" => Ok(Self::Name),
            "email" => Ok(Self::Email),
            "dateOfBirth" => Ok(Self::DateOfBirth),
            "registeredDate" => Ok(Self::RegisteredDate),
            _ => Err("must be one of name, email, dateOfBirth, registeredDate".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Email => "email",
            Self::DateOfBirth => "dateOfBirth",
            Self::RegisteredDate => "registeredDate",
        }
    }

    /// The SQL expression to order by: names sort case-insensitively, as people read them.
    pub fn column(self) -> &'static str {
        match self {
            Self::Name => "lower(name)",
            Self::Email => "email",
            Self::DateOfBirth => "date_of_birth",
            Self::RegisteredDate => "registered_date",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub page: u32,
    pub size: u32,
    pub ascending: bool,
    pub sort_field: SortField,
    /// Trimmed; `None` when absent or blank.
    pub search: Option<String>,
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut list = ListQuery {
            page: 1,
            size: DEFAULT_SIZE,
            ascending: true,
            sort_field: SortField::Name,
            search: None,
        };
        // Digits only, as the document's `integer` reads: no sign, no spaces.
        let number = |raw: &str, max: u32| -> Result<u32, String> {
            match raw.parse::<u32>() {
                Ok(n) if raw.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("must be a whole number from 1 to {max}")),
            }
        };
        for (key, value) in query_pairs(query) {
            let outcome = match key.as_str() {
                "page" => number(&value, MAX_PAGE).map(|n| list.page = n),
                "size" => number(&value, MAX_SIZE).map(|n| list.size = n),
                "sort" => match value.as_str() {
                    "asc" => Ok(true),
                    "desc" => Ok(false),
                    _ => Err("must be asc or desc".to_string()),
                }
                .map(|ascending| list.ascending = ascending),
                "sortField" => SortField::parse(&value).map(|f| list.sort_field = f),
                "searchValue" => {
                    let search = value.trim();
                    if let Err(message) = kit::fields::storable(search) {
                        Err(message)
                    } else if value.chars().count() > MAX_SEARCH_CHARS {
                        Err(format!("must be at most {MAX_SEARCH_CHARS} characters"))
                    } else {
                        list.search = (!search.is_empty()).then(|| search.to_string());
                        Ok(())
                    }
                }
                _ => Err(
                    "is not a parameter of this route (page, size, sort, sortField, searchValue)"
                        .into(),
                ),
            };
            if let Err(message) = outcome {
                errors.insert(key, message);
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.size)
    }

    /// The cache key of this page (searches are not cached: SPEC.md caches unsearched pages).
    pub fn cache_key(&self) -> Option<String> {
        if self.search.is_some() {
            return None;
        }
        Some(format!(
            "page:{}:{}:{}:{}",
            self.page,
            self.size,
            if self.ascending { "asc" } else { "desc" },
            self.sort_field.as_str()
        ))
    }

    /// `%text%` for `ILIKE`, with the pattern characters in the search taken literally.
    pub fn like_pattern(&self) -> Option<String> {
        self.search.as_ref().map(|s| {
            let escaped: String = s
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("%{escaped}%")
        })
    }
}

/// Whole pages needed for `total` items.
pub fn total_pages(total: u64, size: u32) -> u64 {
    total.div_ceil(u64::from(size.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!(
            (q.page, q.size, q.ascending, q.sort_field),
            (1, 10, true, SortField::Name)
        );
        assert_eq!(q.offset(), 0);
        assert_eq!(q.cache_key().as_deref(), Some("page:1:10:asc:name"));
    }

    #[test]
    fn every_parameter_is_read_and_checked() {
        let q = ListQuery::parse(Some(
            "page=3&size=5&sort=desc&sortField=dateOfBirth&searchValue=+Jo+",
        ))
        .unwrap();
        assert_eq!(
            (q.page, q.size, q.ascending, q.sort_field),
            (3, 5, false, SortField::DateOfBirth)
        );
        assert_eq!(q.offset(), 10);
        assert_eq!(q.search.as_deref(), Some("Jo"));
        assert_eq!(q.cache_key(), None, "searches are not cached");
        let nul = ListQuery::parse(Some("searchValue=a%00b")).unwrap_err();
        assert_eq!(nul["searchValue"], kit::fields::NO_NUL);
        let blank = ListQuery::parse(Some("searchValue=")).unwrap();
        assert_eq!(blank.search, None);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, field) in [
            ("page=0", "page"),
            ("page=x", "page"),
            ("size=0", "size"),
            ("size=101", "size"),
            ("sort=up", "sort"),
            // Exactly as the document's enum spells them.
            ("sort=DESC", "sort"),
            ("page=+3", "page"),
            ("size= 5", "size"),
            ("sortField=address", "sortField"),
            ("color=red", "color"),
        ] {
            let errors = ListQuery::parse(Some(query)).unwrap_err();
            assert_eq!(errors.keys().collect::<Vec<_>>(), [field], "{query}");
        }
    }

    #[test]
    fn searches_match_literally_and_pages_round_up() {
        let q = ListQuery::parse(Some("searchValue=50%25_off")).unwrap();
        assert_eq!(q.like_pattern().as_deref(), Some("%50\\%\\_off%"));
        assert_eq!(total_pages(0, 10), 0);
        assert_eq!(total_pages(15, 10), 2);
        assert_eq!(total_pages(20, 10), 2);
    }
}
