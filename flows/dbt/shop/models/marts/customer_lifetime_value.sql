select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.country,
    count(o.order_id) as order_count,
    min(o.order_date) as first_order_date,
    max(o.order_date) as last_order_date,
    coalesce(sum(o.amount_paid), 0) as lifetime_value
from {{ ref('stg_customers') }} as c
left join {{ ref('fct_orders') }} as o
    on c.customer_id = o.customer_id and o.status not in ('cancelled', 'returned')
group by c.customer_id, c.first_name, c.last_name, c.email, c.country
