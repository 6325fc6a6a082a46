//! Typed provider option keys, like `object_store`'s `AmazonS3ConfigKey`: a provider
//! names its options with an enum made by [`provider_options!`](crate::provider_options),
//! and they are set from the enum or from their names (a configuration file, an
//! environment variable); a name no registered provider knows is refused
//! ([`ProviderRecord::build`](crate::driver::ProviderRecord::build)).

/// Declares a provider's option keys: an enum whose variants are its options, with
/// `ALL`, `NAMES` (for the registration's `options`), `name()`, `AsRef<str>` (so that
/// `builder.option(key, value)` takes it), `Into<String>`, `Display`, and `FromStr` (an unknown name is
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) listing the known ones).
///
/// ```
/// registry_client::provider_options! {
///     /// The example provider's options.
///     pub enum ExampleOption {
///         /// Which account to use.
///         Account = "example_account",
///     }
/// }
/// assert_eq!(ExampleOption::Account.name(), "example_account");
/// assert_eq!("example_account".parse::<ExampleOption>().unwrap(), ExampleOption::Account);
/// assert!("example_acount".parse::<ExampleOption>().is_err());
/// ```
#[macro_export]
macro_rules! provider_options {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $key:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every option, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every option's name, as written in configuration.
            pub const NAMES: &'static [&'static str] = &[$($key),+];

            /// The option's name, as written in configuration.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $key),+
                }
            }
        }

        impl ::core::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.name()
            }
        }

        impl ::core::convert::From<$name> for ::std::string::String {
            fn from(key: $name) -> ::std::string::String {
                key.name().to_owned()
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::Error;

            fn from_str(name: &str) -> $crate::Result<Self> {
                match name {
                    $($key => Ok($name::$variant),)+
                    _ => Err($crate::Error::InvalidConfig(format!(
                        "unknown option {name:?}; {} are {:?}",
                        stringify!($name),
                        Self::NAMES
                    ))),
                }
            }
        }
    };
}
