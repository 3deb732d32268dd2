//! The order workflow's pricing step. The state machine hands it a validated order (the Python
//! `validate` step's output) and stores what it returns: the same order with its lines priced, a
//! volume discount, tax and the total, all in integer cents so that no rounding is left to
//! floating point. It ships to customers as a compiled `bootstrap` binary: the vendor's pricing
//! rules are in no file the customer receives.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};

/// One line of an order, as `validate` passes it on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, in cents.
    pub unit_price_cents: u64,
}

/// A validated order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    /// The order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The lines.
    pub lines: Vec<Line>,
}

/// A priced order: what the state machine stores and announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Priced {
    /// The order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The lines, as ordered.
    pub lines: Vec<Line>,
    /// How many items in all.
    pub items: u64,
    /// The lines' sum.
    pub subtotal_cents: u64,
    /// The volume discount's rate in basis points (1/100 of a percent).
    pub discount_basis_points: u64,
    /// The discount.
    pub discount_cents: u64,
    /// The tax on the discounted subtotal.
    pub tax_cents: u64,
    /// What the customer pays.
    pub total_cents: u64,
}

/// Why an order cannot be priced.
#[derive(Debug, PartialEq, Eq)]
pub enum PriceError {
    /// The order has no lines.
    NoLines,
    /// The sums do not fit in 64 bits.
    TooLarge,
}

impl std::fmt::Display for PriceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceError::NoLines => write!(f, "the order has no lines to price"),
            PriceError::TooLarge => write!(f, "the order's total is too large to price"),
        }
    }
}

impl std::error::Error for PriceError {}

/// What Lambda reports, and what a state machine's `Catch` can name: `OrderCannotBePriced`.
impl From<PriceError> for Diagnostic {
    fn from(error: PriceError) -> Self {
        Diagnostic {
            error_type: "OrderCannotBePriced".into(),
            error_message: error.to_string(),
        }
    }
}

/// The volume discount: 5 % from 10 items, 10 % from 50.
pub fn discount_basis_points(items: u64) -> u64 {
    match items {
        0..=9 => 0,
        10..=49 => 500,
        _ => 1000,
    }
}

/// `amount` × `basis_points` / 10 000, rounded half up.
fn share(amount: u64, basis_points: u64) -> Result<u64, PriceError> {
    let product = u128::from(amount) * u128::from(basis_points);
    u64::try_from((product + 5_000) / 10_000).map_err(|_| PriceError::TooLarge)
}

/// Prices `order` with the tax rate `tax_basis_points`.
pub fn price(order: Order, tax_basis_points: u64) -> Result<Priced, PriceError> {
    if order.lines.is_empty() {
        return Err(PriceError::NoLines);
    }
    let mut items: u64 = 0;
    let mut subtotal: u64 = 0;
    for line in &order.lines {
        items = items
            .checked_add(u64::from(line.quantity))
            .ok_or(PriceError::TooLarge)?;
        let amount = line
            .unit_price_cents
            .checked_mul(u64::from(line.quantity))
            .ok_or(PriceError::TooLarge)?;
        subtotal = subtotal.checked_add(amount).ok_or(PriceError::TooLarge)?;
    }
    let rate = discount_basis_points(items);
    let discount = share(subtotal, rate)?;
    let taxable = subtotal - discount;
    let tax = share(taxable, tax_basis_points)?;
    let total = taxable.checked_add(tax).ok_or(PriceError::TooLarge)?;
    Ok(Priced {
        order_id: order.order_id,
        customer: order.customer,
        currency: order.currency,
        lines: order.lines,
        items,
        subtotal_cents: subtotal,
        discount_basis_points: rate,
        discount_cents: discount,
        tax_cents: tax,
        total_cents: total,
    })
}

/// The tax rate from `TAX_BASIS_POINTS` (the template sets it from a stack parameter); 0 when
/// unset.
fn tax_rate() -> Result<u64, Diagnostic> {
    match std::env::var("TAX_BASIS_POINTS") {
        Ok(text) => text.parse().map_err(|_| Diagnostic {
            error_type: "Misconfigured".into(),
            error_message: format!("TAX_BASIS_POINTS is {text:?}, not a whole number"),
        }),
        Err(_) => Ok(0),
    }
}

async fn handler(event: LambdaEvent<Order>) -> Result<Priced, Diagnostic> {
    Ok(price(event.payload, tax_rate()?)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lines: &[(u32, u64)]) -> Order {
        Order {
            order_id: "o-1".into(),
            customer: "globex".into(),
            currency: "EUR".into(),
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, &(quantity, unit_price_cents))| Line {
                    sku: format!("SKU-{i}"),
                    quantity,
                    unit_price_cents,
                })
                .collect(),
        }
    }

    #[test]
    fn small_orders_pay_list_price_plus_tax() {
        let priced = price(order(&[(2, 1250), (1, 499)]), 2000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(priced.items, 3);
        assert_eq!(priced.subtotal_cents, 2999);
        assert_eq!(priced.discount_cents, 0);
        assert_eq!(priced.tax_cents, 600, "20 % of 29.99, rounded half up");
        assert_eq!(priced.total_cents, 3599);
    }

    #[test]
    fn volume_discounts_start_at_ten_and_fifty_items() {
        assert_eq!(discount_basis_points(9), 0);
        assert_eq!(discount_basis_points(10), 500);
        assert_eq!(discount_basis_points(49), 500);
        assert_eq!(discount_basis_points(50), 1000);
        let priced = price(order(&[(10, 1000)]), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(priced.discount_cents, 500);
        assert_eq!(priced.total_cents, 9500);
    }

    #[test]
    fn an_empty_order_is_refused() {
        assert_eq!(price(order(&[]), 0), Err(PriceError::NoLines));
    }

    #[test]
    fn totals_that_overflow_are_refused_not_wrapped() {
        assert_eq!(
            price(order(&[(u32::MAX, u64::MAX / 2)]), 0),
            Err(PriceError::TooLarge)
        );
        assert_eq!(
            price(order(&[(1, u64::MAX), (1, 1)]), 0),
            Err(PriceError::TooLarge)
        );
    }

    #[test]
    fn unknown_fields_in_a_line_are_refused() {
        let text = r#"{"order_id":"o","customer":"c","currency":"EUR",
            "lines":[{"sku":"A","quantity":1,"unit_price_cents":1,"discount":100}]}"#;
        assert!(serde_json::from_str::<Order>(text).is_err());
    }
}
