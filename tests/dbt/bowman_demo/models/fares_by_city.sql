-- dbt's default materialization: a view, replaced on every run (create as __dbt_tmp,
-- rename, drop the backup).
{{ config(materialized='view') }}
select city, count(*) as trips, sum(fare) as revenue
from {{ ref('trips') }}
group by city
